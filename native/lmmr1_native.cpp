// lmmr1_native: a small C ABI over libtorch's CUDA graphs and streams for LmmR1.NET (TorchSharp 0.107 exposes neither),
// and over flash-attention's variable-length kernels (padding-free packing). Built against the libtorch of the
// installed PyTorch that the CUDA route runs on (`lmmr1 native build`, or on the first CUDA use; see
// src/LmmR1/Infrastructure/NativeExtension.cs). For graphs no tensor crosses this ABI: the managed side issues its
// ordinary TorchSharp ops on the capturing thread between capture_begin and capture_end, and the current stream
// (thread-local inside libc10_cuda) routes them into the capture. lmmr1_varlen_attention takes TorchSharp tensor
// handles (at::Tensor*, the same libtorch) and returns a new one that carries its autograd node. Every function
// returns 0 on success or -1 with a message for lmmr1_last_error().
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/core/Event.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <torch/csrc/autograd/custom_function.h>

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
}  // namespace

extern "C" {

const char* lmmr1_last_error() { return last_error.c_str(); }

int lmmr1_abi_version() { return 2; }

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
