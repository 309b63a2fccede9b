// lmmr1_native: a small C ABI over libtorch's CUDA graphs and streams for LmmR1.NET (TorchSharp 0.107 exposes neither),
// and over flash-attention's variable-length kernels (padding-free packing). Built against the libtorch of the
// installed PyTorch that the CUDA route runs on (`lmmr1 native build`, or on the first CUDA use; see
// src/LmmR1/Infrastructure/NativeExtension.cs). For graphs no tensor crosses this ABI: the managed side issues its
// ordinary TorchSharp ops on the capturing thread between capture_begin and capture_end, and the current stream
// (thread-local inside libc10_cuda) routes them into the capture. lmmr1_varlen_attention takes TorchSharp tensor
// handles (at::Tensor*, the same libtorch) and returns a new one that carries its autograd node. Every function
// returns 0 on success or -1 with a message for lmmr1_last_error(). The lmmr1_fused_* functions wrap the decode step's
// fused elementwise kernels (lmmr1_kernels.cu, compiled by nvcc and linked in; built without them as
// LMMR1_NO_KERNELS when no nvcc is found, then lmmr1_has_fused_kernels() is 0): they check and allocate with ATen on
// the current stream (so a CUDA-graph capture records them) and hand raw pointers to the launchers. No autograd: the
// managed side calls them only without grad (decode).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/core/Event.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <torch/csrc/autograd/custom_function.h>

#ifndef LMMR1_NO_KERNELS
extern "C" {
int lmmr1_k_add_square(int dtype, const void* x, const void* r, void* h, float* sq, int64_t n, void* stream);
int lmmr1_k_rms_apply(int dtype, const void* h, const float* var, const void* w, void* out, float eps, int64_t n, int64_t dim, void* stream);
int lmmr1_k_silu_mul(int dtype, const void* g, const void* u, void* out, int64_t n, int64_t width, int64_t ldg, int64_t ldu, void* stream);
int lmmr1_k_rope_decode(int dtype, const void* q, const void* k, const void* v, int64_t ldq, int64_t ldk, int64_t ldv, const void* cosv,
                        const void* sinv, void* qo, void* keys, void* values, const int64_t* position, int64_t rows, int heads, int kv_heads,
                        int dim, int64_t capacity, void* stream);
int lmmr1_k_head_logsoftmax(int dtype, const void* logits, int64_t ld, int64_t rows, int64_t vocab, const int64_t* labels, float inv_t,
                            int scaled, float* lp, float* lse, float* ent, void* stream);
int lmmr1_k_head_dlogits(int dtype, void* logits, int64_t ld, int64_t rows, int64_t cols, const float* lse, const float* g, const int64_t* labels,
                         int64_t v0, float inv_t, int scaled, void* stream);
int lmmr1_k_decode_attention_split_keys();
int lmmr1_k_decode_attention(int dtype, const void* q, const void* keys, const void* values, const bool* valid, const int64_t* position,
                             int64_t rows, int kv_heads, int group, int dim, int64_t capacity, float scale, float* ws_ml, float* ws_o, void* out,
                             void* stream);
}
#endif

namespace {
thread_local std::string last_error;
// The side stream of this thread (warm-up and capture run there) and the stream it replaced while entered.
thread_local std::optional<c10::cuda::CUDAStream> side;
thread_local std::optional<c10::cuda::CUDAStream> saved;

int fail(const std::exception& e) {
    last_error = e.what();
    return -1;
}

// `waiter` waits for the work queued so far on `waited` (device side; no host sync).
void stream_wait(const c10::cuda::CUDAStream& waiter, const c10::cuda::CUDAStream& waited) {
    c10::Event ev(c10::DeviceType::CUDA);
    ev.record(waited.unwrap());
    ev.block(waiter.unwrap());
}
// Causal (or not) attention over packed variable-length sequences: q [Tq, H, D], k/v [Tk, kvH, D] (H a multiple of
// kvH: GQA in the kernel), cu_seqlens int32 [B + 1]. Forward and backward are at::_flash_attention_forward/_backward
// (native_functions.yaml: ..., Tensor? cum_seq_q, Tensor? cum_seq_k, SymInt max_q, SymInt max_k, float dropout_p,
// bool is_causal, bool return_debug_mask, *, float? scale, ... -> (output, softmax_logsumexp, rng_state, unused,
// debug_attn_mask); the backward takes the forward's output, logsumexp and the two rng tensors). Only the
// arguments both PyTorch 2.10 and 2.11 share are passed; the trailing optional ones keep their defaults.
struct VarlenFlash : public torch::autograd::Function<VarlenFlash> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q_in, const at::Tensor& k_in,
                              const at::Tensor& v_in, const at::Tensor& cu_q, const at::Tensor& cu_k, int64_t max_q,
                              int64_t max_k, double scale, bool causal) {
        auto q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
        auto r = at::_flash_attention_forward(q, k, v, cu_q, cu_k, max_q, max_k, 0.0, causal, false, scale);
        at::Tensor out = std::get<0>(r);
        ctx->save_for_backward({q, k, v, out, std::get<1>(r), cu_q, cu_k, std::get<2>(r), std::get<3>(r)});
        ctx->saved_data["max_q"] = max_q;
        ctx->saved_data["max_k"] = max_k;
        ctx->saved_data["scale"] = scale;
        ctx->saved_data["causal"] = causal;
        return out;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
        auto s = ctx->get_saved_variables();
        auto g = grads[0].contiguous();
        auto r = at::_flash_attention_backward(g, s[0], s[1], s[2], s[3], s[4], s[5], s[6], ctx->saved_data["max_q"].toInt(),
                                               ctx->saved_data["max_k"].toInt(), 0.0, ctx->saved_data["causal"].toBool(), s[7], s[8],
                                               ctx->saved_data["scale"].toDouble());
        return {std::get<0>(r), std::get<1>(r), std::get<2>(r), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
                at::Tensor(), at::Tensor()};
    }
};
at::Tensor& T(void* h) { return *static_cast<at::Tensor*>(h); }

#ifndef LMMR1_NO_KERNELS
int dtype_code(const at::Tensor& t) {
    if (t.scalar_type() == at::kFloat) return 0;
    if (t.scalar_type() == at::kBFloat16) return 1;
    throw std::runtime_error("fused kernels take float32 or bfloat16 tensors");
}
// A contiguous CUDA tensor on x's device, of dtype `dt`, with `numel` elements.
void need(const at::Tensor& t, const at::Tensor& x, at::ScalarType dt, int64_t numel, const char* what) {
    if (!t.is_cuda() || t.device() != x.device() || !t.is_contiguous() || t.scalar_type() != dt || t.numel() != numel)
        throw std::runtime_error(std::string(what) + ": expected a contiguous CUDA tensor of " + c10::toString(dt) + " with " +
                                 std::to_string(numel) + " elements on the input's device");
}
// The element distance between consecutive rows of t, `rows` rows of `width` contiguous elements on x's device in x's
// dtype: contiguous (width), or [.., width] whose leading dims collapse into one of a single pitch ≥ width (a column
// slice of a wider row-major tensor, as the q/k/v or gate/up views of one fused GEMM's output).
int64_t row_stride(const at::Tensor& t, const at::Tensor& x, int64_t rows, int64_t width, const char* what) {
    if (t.is_cuda() && t.device() == x.device() && t.scalar_type() == x.scalar_type() && t.numel() == rows * width) {
        if (t.is_contiguous()) return width;
        bool ok = t.dim() >= 2 && t.size(-1) == width && t.stride(-1) == 1;
        int64_t pitch = -1, next = 0;          // next: the stride the next non-unit leading dim must have to collapse
        for (int64_t d = t.dim() - 2; ok && d >= 0; --d) {
            if (t.size(d) == 1) continue;
            if (pitch < 0) { pitch = t.stride(d); ok = pitch >= width; next = pitch * t.size(d); }
            else { ok = t.stride(d) == next; next *= t.size(d); }
        }
        if (ok) return pitch < 0 ? width : pitch;
    }
    throw std::runtime_error(std::string(what) + ": expected a CUDA tensor of " + c10::toString(x.scalar_type()) + " holding " + std::to_string(rows) +
                             " rows of " + std::to_string(width) + " contiguous elements on the input's device");
}
void* stream_of(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }
void launched(int rc, const char* what) {
    if (rc != 0) throw std::runtime_error(std::string(what) + ": kernel launch failed (cudaError " + std::to_string(rc) + ")");
}
#endif
}  // namespace

extern "C" {

#ifdef LMMR1_NO_KERNELS
int lmmr1_has_fused_kernels() { return 0; }
int lmmr1_fused_add_square(void*, void*, void**, void**) { last_error = "built without nvcc: no fused kernels"; return -1; }
int lmmr1_fused_rms_apply(void*, void*, void*, double, void**) { last_error = "built without nvcc: no fused kernels"; return -1; }
int lmmr1_fused_silu_mul(void*, void*, void**) { last_error = "built without nvcc: no fused kernels"; return -1; }
int lmmr1_fused_rope_decode(void*, void*, void*, void*, void*, void*, void*, void*, int, void**) {
    last_error = "built without nvcc: no fused kernels";
    return -1;
}
int lmmr1_fused_head_logsoftmax(void*, void*, double, int, void**, void**, void**) { last_error = "built without nvcc: no fused kernels"; return -1; }
int lmmr1_fused_head_dlogits(void*, void*, void*, void*, int64_t, double) { last_error = "built without nvcc: no fused kernels"; return -1; }
int lmmr1_fused_decode_attention(void*, void*, void*, void*, void*, void**) { last_error = "built without nvcc: no fused kernels"; return -1; }
#else
int lmmr1_has_fused_kernels() { return 1; }

// x [..]; r null or like x. *h_out = x + r (null when r is null: h is x), *sq_out = float32(h)² like x.
int lmmr1_fused_add_square(void* x, void* r, void** h_out, void** sq_out) {
    try {
        auto& xt = T(x);
        int code = dtype_code(xt);
        need(xt, xt, xt.scalar_type(), xt.numel(), "add_square input");
        at::Tensor h;
        if (r) {
            need(T(r), xt, xt.scalar_type(), xt.numel(), "add_square residual");
            h = at::empty(xt.sizes(), xt.options());
        }
        auto sq = at::empty(xt.sizes(), xt.options().dtype(at::kFloat));
        launched(lmmr1_k_add_square(code, xt.data_ptr(), r ? T(r).data_ptr() : nullptr, r ? h.data_ptr() : nullptr, sq.data_ptr<float>(),
                                    xt.numel(), stream_of(xt)), "add_square");
        *h_out = r ? new at::Tensor(std::move(h)) : nullptr;
        *sq_out = new at::Tensor(std::move(sq));
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

// h [.., dim]; var float32 [.., 1] (one per row); w [dim]. *out = w · round(h · rsqrt(var + eps)) like h.
int lmmr1_fused_rms_apply(void* h, void* var, void* w, double eps, void** out) {
    try {
        auto& ht = T(h);
        int code = dtype_code(ht);
        need(ht, ht, ht.scalar_type(), ht.numel(), "rms_apply input");
        int64_t dim = ht.size(-1);
        need(T(var), ht, at::kFloat, ht.numel() / dim, "rms_apply variance");
        need(T(w), ht, ht.scalar_type(), dim, "rms_apply weight");
        auto o = at::empty(ht.sizes(), ht.options());
        launched(lmmr1_k_rms_apply(code, ht.data_ptr(), T(var).data_ptr<float>(), T(w).data_ptr(), o.data_ptr(), static_cast<float>(eps),
                                   ht.numel(), dim, stream_of(ht)), "rms_apply");
        *out = new at::Tensor(std::move(o));
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

// g, u [rows, …, width] (contiguous, or row-strided column slices: row_stride, as the gate/up views of one fused GEMM's
// output). *out = round(silu(g)) · u, contiguous in g's shape and dtype.
int lmmr1_fused_silu_mul(void* g, void* u, void** out) {
    try {
        auto& gt = T(g);
        int code = dtype_code(gt);
        if (gt.dim() < 1 || gt.numel() == 0) throw std::runtime_error("silu_mul: gate must be a non-empty tensor");
        int64_t width = gt.size(-1), rows = gt.numel() / width;
        int64_t ldg = row_stride(gt, gt, rows, width, "silu_mul gate");
        int64_t ldu = row_stride(T(u), gt, rows, width, "silu_mul up");
        auto o = at::empty(gt.sizes(), gt.options().memory_format(at::MemoryFormat::Contiguous));
        launched(lmmr1_k_silu_mul(code, gt.data_ptr(), T(u).data_ptr(), o.data_ptr(), gt.numel(), width, ldg, ldu, stream_of(gt)), "silu_mul");
        *out = new at::Tensor(std::move(o));
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

// One decode token per row. keys/values [B, KH, C, D] (the layer's static cache), q B rows of H·D, k/v B rows of KH·D
// (contiguous, or row-strided column slices: row_stride), cos/sin B·D elements (contiguous, any shape), position int64 [1]. Writes rotated k and v at cache index *position and returns
// *q_out = rotated q [B, H, 1, D].
int lmmr1_fused_rope_decode(void* q, void* k, void* v, void* cosv, void* sinv, void* keys, void* values, void* position, int heads,
                            void** q_out) {
    try {
        auto& kc = T(keys);
        int code = dtype_code(kc);
        if (kc.dim() != 4) throw std::runtime_error("rope_decode: keys must be [B, KH, C, D]");
        int64_t rows = kc.size(0), kvh = kc.size(1), cap = kc.size(2), dim = kc.size(3);
        need(kc, kc, kc.scalar_type(), kc.numel(), "rope_decode keys");
        need(T(values), kc, kc.scalar_type(), kc.numel(), "rope_decode values");
        int64_t ldq = row_stride(T(q), kc, rows, heads * dim, "rope_decode q");
        int64_t ldk = row_stride(T(k), kc, rows, kvh * dim, "rope_decode k");
        int64_t ldv = row_stride(T(v), kc, rows, kvh * dim, "rope_decode v");
        need(T(cosv), kc, kc.scalar_type(), rows * dim, "rope_decode cos");
        need(T(sinv), kc, kc.scalar_type(), rows * dim, "rope_decode sin");
        need(T(position), kc, at::kLong, 1, "rope_decode position");
        auto qo = at::empty({rows, heads, 1, dim}, kc.options());
        launched(lmmr1_k_rope_decode(code, T(q).data_ptr(), T(k).data_ptr(), T(v).data_ptr(), ldq, ldk, ldv, T(cosv).data_ptr(), T(sinv).data_ptr(), qo.data_ptr(),
                                     kc.data_ptr(), T(values).data_ptr(), T(position).data_ptr<int64_t>(), rows, heads, static_cast<int>(kvh),
                                     static_cast<int>(dim), cap, stream_of(kc)), "rope_decode");
        *q_out = new at::Tensor(std::move(qo));
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

// ATen divides by a CPU scalar as a product with its fp32 reciprocal (div_true_kernel_cuda); the kernels do the same.
float reciprocal(double temperature) { return 1.0f / static_cast<float>(temperature); }

// logits [rows, V] float32/bf16 (last dim contiguous, any row stride), labels int64 [rows]. *lp = log_softmax(x)[label]
// and *lse = logsumexp(x), x = fp32(logits)/T, float32 [rows]; with want_entropy *ent = the raw logits' entropy, else null.
int lmmr1_fused_head_logsoftmax(void* logits, void* labels, double temperature, int want_entropy, void** lp_out, void** lse_out, void** ent_out) {
    try {
        auto& lt = T(logits);
        int code = dtype_code(lt);
        if (lt.dim() != 2 || !lt.is_cuda() || lt.stride(1) != 1) throw std::runtime_error("head_logsoftmax: logits must be a CUDA [rows, V] tensor with contiguous rows");
        int64_t rows = lt.size(0);
        need(T(labels), lt, at::kLong, rows, "head_logsoftmax labels");
        auto opts = lt.options().dtype(at::kFloat);
        auto lp = at::empty({rows}, opts), lse = at::empty({rows}, opts);
        at::Tensor ent = want_entropy ? at::empty({rows}, opts) : at::Tensor();
        launched(lmmr1_k_head_logsoftmax(code, lt.data_ptr(), lt.stride(0), rows, lt.size(1), T(labels).data_ptr<int64_t>(), reciprocal(temperature),
                                         temperature != 1.0, lp.data_ptr<float>(), lse.data_ptr<float>(), want_entropy ? ent.data_ptr<float>() : nullptr,
                                         stream_of(lt)), "head_logsoftmax");
        *lp_out = new at::Tensor(std::move(lp));
        *lse_out = new at::Tensor(std::move(lse));
        *ent_out = want_entropy ? new at::Tensor(std::move(ent)) : nullptr;
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

// In place: logits [rows, c] of the vocabulary columns v0 … v0+c−1 become the gradient of Σ g·log_softmax(x)[label]
// with respect to them (lse, g float32 [rows]; labels int64 [rows]), rounded to the logits' dtype.
int lmmr1_fused_head_dlogits(void* logits, void* lse, void* g, void* labels, int64_t v0, double temperature) {
    try {
        auto& lt = T(logits);
        int code = dtype_code(lt);
        if (lt.dim() != 2 || !lt.is_cuda() || lt.stride(1) != 1) throw std::runtime_error("head_dlogits: logits must be a CUDA [rows, c] tensor with contiguous rows");
        int64_t rows = lt.size(0);
        need(T(lse), lt, at::kFloat, rows, "head_dlogits lse");
        need(T(g), lt, at::kFloat, rows, "head_dlogits grad");
        need(T(labels), lt, at::kLong, rows, "head_dlogits labels");
        launched(lmmr1_k_head_dlogits(code, lt.data_ptr(), lt.stride(0), rows, lt.size(1), T(lse).data_ptr<float>(), T(g).data_ptr<float>(),
                                      T(labels).data_ptr<int64_t>(), v0, reciprocal(temperature), temperature != 1.0, stream_of(lt)), "head_dlogits");
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

// One decode query per row: q [B, H, 1, D] (contiguous), keys/values [B, KH, C, D] (a layer's static cache), valid bool
// [B, C], position int64 [1]. *out = softmax(q·kᵀ/√D over the valid keys 0 … *position)·v, [B, H, 1, D] like q.
int lmmr1_fused_decode_attention(void* q, void* keys, void* values, void* valid, void* position, void** out) {
    try {
        auto& kc = T(keys);
        int code = dtype_code(kc);
        if (kc.dim() != 4) throw std::runtime_error("decode_attention: keys must be [B, KH, C, D]");
        int64_t rows = kc.size(0), kvh = kc.size(1), cap = kc.size(2), dim = kc.size(3);
        auto& qt = T(q);
        if (qt.dim() != 4 || qt.size(0) != rows || qt.size(2) != 1 || qt.size(3) != dim || qt.size(1) % kvh != 0)
            throw std::runtime_error("decode_attention: q must be [B, H, 1, D] with H a multiple of the keys' KH");
        int64_t heads = qt.size(1);
        need(qt, kc, kc.scalar_type(), qt.numel(), "decode_attention q");
        need(kc, kc, kc.scalar_type(), kc.numel(), "decode_attention keys");
        need(T(values), kc, kc.scalar_type(), kc.numel(), "decode_attention values");
        need(T(valid), kc, at::kBool, rows * cap, "decode_attention valid");
        need(T(position), kc, at::kLong, 1, "decode_attention position");
        int64_t splits = (cap + lmmr1_k_decode_attention_split_keys() - 1) / lmmr1_k_decode_attention_split_keys();
        int64_t group = heads / kvh;
        auto f32 = kc.options().dtype(at::kFloat);
        auto ml = at::empty({rows * kvh * splits * group * 2}, f32);
        auto wo = at::empty({rows * kvh * splits * group * dim}, f32);
        auto o = at::empty({rows, heads, 1, dim}, kc.options());
        int rc = lmmr1_k_decode_attention(code, qt.data_ptr(), kc.data_ptr(), T(values).data_ptr(), T(valid).data_ptr<bool>(),
                                          T(position).data_ptr<int64_t>(), rows, static_cast<int>(kvh), static_cast<int>(group), static_cast<int>(dim),
                                          cap, static_cast<float>(1.0 / std::sqrt(static_cast<double>(dim))), ml.data_ptr<float>(), wo.data_ptr<float>(),
                                          o.data_ptr(), stream_of(kc));
        if (rc == -2) throw std::runtime_error("decode_attention: shape not supported (query heads per kv head ≤ 16, head dim a multiple of 8 up to 256)");
        launched(rc, "decode_attention");
        *out = new at::Tensor(std::move(o));
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}
#endif

const char* lmmr1_last_error() { return last_error.c_str(); }

int lmmr1_abi_version() { return 6; }

// The address of t's first element (storage pointer plus offset), 0 for a null handle: lets the managed side check that
// parameters still are views of a fused tensor (TorchSharp 0.107 exposes no data pointer).
int64_t lmmr1_data_ptr(void* t) { return t ? reinterpret_cast<int64_t>(T(t).data_ptr()) : 0; }

// Flash varlen attention (VarlenFlash above) on TorchSharp handles; *out receives a new at::Tensor* (the caller owns
// it) whose grad_fn runs the flash backward when q, k or v require grad.
int lmmr1_varlen_attention(void* q, void* k, void* v, void* cu_q, void* cu_k, int64_t max_q, int64_t max_k, double scale,
                           int causal, void** out) {
    try {
        at::Tensor o = VarlenFlash::apply(*static_cast<at::Tensor*>(q), *static_cast<at::Tensor*>(k), *static_cast<at::Tensor*>(v),
                                          *static_cast<at::Tensor*>(cu_q), *static_cast<at::Tensor*>(cu_k), max_q, max_k, scale,
                                          causal != 0);
        *out = new at::Tensor(std::move(o));
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

// Makes this thread's side stream (from the pool of `device`) current after it waited for the current stream.
int lmmr1_side_stream_enter(int device) {
    try {
        if (saved) throw std::runtime_error("lmmr1_side_stream_enter: already entered");
        c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
        if (!side || side->device_index() != device) side = c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device));
        auto cur = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device));
        stream_wait(*side, cur);
        saved = cur;
        c10::cuda::setCurrentCUDAStream(*side);
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

// Restores the stream that was current before enter; it then waits for the side stream's work.
int lmmr1_side_stream_exit() {
    try {
        if (!saved) throw std::runtime_error("lmmr1_side_stream_exit: not entered");
        auto prev = *saved;
        saved.reset();
        c10::cuda::setCurrentCUDAStream(prev);
        stream_wait(prev, *side);
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

void* lmmr1_graph_create() {
    try { return new at::cuda::CUDAGraph(); }
    catch (const std::exception& e) { fail(e); return nullptr; }
}

// Begins capturing the current (side) stream into `g`, with a private memory pool, or the pool of `share_pool_of`
// when that is another (already captured) graph. Thread-local capture mode: other threads (e.g. a memory sampler)
// may keep calling CUDA.
int lmmr1_graph_capture_begin(void* g, void* share_pool_of) {
    try {
        auto* graph = static_cast<at::cuda::CUDAGraph*>(g);
        decltype(graph->pool()) pool{0, 0};
        if (share_pool_of) pool = static_cast<at::cuda::CUDAGraph*>(share_pool_of)->pool();
        graph->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

int lmmr1_graph_capture_end(void* g) {
    try { static_cast<at::cuda::CUDAGraph*>(g)->capture_end(); return 0; }
    catch (const std::exception& e) { return fail(e); }
}

// Launches the captured work on the current stream (TorchSharp's default stream).
int lmmr1_graph_replay(void* g) {
    try { static_cast<at::cuda::CUDAGraph*>(g)->replay(); return 0; }
    catch (const std::exception& e) { return fail(e); }
}

// Repeats the graph n times back to back (one P/Invoke for n decode steps).
int lmmr1_graph_replay_n(void* g, int n) {
    try {
        auto* graph = static_cast<at::cuda::CUDAGraph*>(g);
        for (int i = 0; i < n; i++) graph->replay();
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

int lmmr1_graph_destroy(void* g) {
    try { delete static_cast<at::cuda::CUDAGraph*>(g); return 0; }
    catch (const std::exception& e) { return fail(e); }
}

// Waits on the host for all work queued on the current stream of `device`.
int lmmr1_stream_synchronize(int device) {
    try { c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).synchronize(); return 0; }
    catch (const std::exception& e) { return fail(e); }
}

// Caching-allocator statistics of `device` (what torch.cuda.max_memory_allocated / memory_reserved report).
int lmmr1_memory_stats(int device, int64_t* allocated, int64_t* peak_allocated, int64_t* reserved, int64_t* peak_reserved) {
    try {
        auto s = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
        const size_t all = 0;  // StatType::AGGREGATE
        *allocated = s.allocated_bytes[all].current;
        *peak_allocated = s.allocated_bytes[all].peak;
        *reserved = s.reserved_bytes[all].current;
        *peak_reserved = s.reserved_bytes[all].peak;
        return 0;
    } catch (const std::exception& e) { return fail(e); }
}

int lmmr1_reset_peak_memory(int device) {
    try { c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device)); return 0; }
    catch (const std::exception& e) { return fail(e); }
}

int lmmr1_empty_cache() {
    try { c10::cuda::CUDACachingAllocator::emptyCache(); return 0; }
    catch (const std::exception& e) { return fail(e); }
}

}  // extern "C"
