// lmmr1_kernels: fused elementwise kernels for the decode step (issue 12), so that the step captured in a CUDA graph
// runs ~17 kernels per decoder layer instead of ~40. Each kernel does, element for element, exactly the arithmetic of
// the TorchSharp ops it replaces (src/LmmR1/Models/Qwen/FusedDecodeOps.cs lists them), with every rounding where ATen
// rounds: products and sums with __fmul_rn / __fadd_rn (never contracted into an FMA, as ATen's separate kernels
// cannot be), fp32 → bf16 round-to-nearest-even as c10::BFloat16, rsqrtf / expf / IEEE division as ATen's rsqrt and
// silu kernels. Reductions are not here: the RMSNorm variance stays torch's own mean kernel, so results are meant to
// be bit-identical to the unfused path (bench/generation/graph_check.sh checks it on the GPU). Plain CUDA, no torch or
// cuda_bf16 headers: bf16 travels as uint16_t. Compiled by nvcc when one is found (NativeExtension.cs); without it the
// extension builds without these kernels and the decode step stays unfused.
#include <cstdint>
#include <cuda_runtime.h>

namespace {

typedef uint16_t bf16;

__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const bf16* p, int64_t i) { return __uint_as_float(static_cast<uint32_t>(p[i]) << 16); }

// Rounds to T: identity for fp32; for bf16 c10's round_to_nearest_even (NaN → 0x7FC0).
__device__ __forceinline__ float round_to(float x, const float*) { return x; }
__device__ __forceinline__ float round_to(float x, const bf16*) {
    uint32_t u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __uint_as_float(0x7fc00000u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return __uint_as_float(u & 0xffff0000u);
}
__device__ __forceinline__ void store(float* p, int64_t i, float x) { p[i] = x; }
__device__ __forceinline__ void store(bf16* p, int64_t i, float x) { p[i] = static_cast<bf16>(__float_as_uint(x) >> 16); }  // x already rounded

inline int blocks_for(int64_t n) {
    int64_t b = (n + 255) / 256;
    return static_cast<int>(b < 1 ? 1 : (b > 8192 ? 8192 : b));
}

#define GRID_STRIDE(i, n) for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// h = round(x + r) when r (x.Plus(r)); sq = fp32(h)² (h.to(float32).pow(2)).
template <typename T>
__global__ void add_square(const T* x, const T* r, T* h, float* sq, int64_t n) {
    GRID_STRIDE(i, n) {
        float v = load(x, i);
        if (r != nullptr) {
            v = round_to(__fadd_rn(v, load(r, i)), x);
            store(h, i, v);
        }
        sq[i] = __fmul_rn(v, v);
    }
}

// out = round(w · round(fp32(h) · rsqrt(var + eps))): Qwen2RMSNorm after the variance (one var per row of `dim`).
template <typename T>
__global__ void rms_apply(const T* h, const float* var, const T* w, T* out, float eps, int64_t n, int64_t dim) {
    GRID_STRIDE(i, n) {
        float r = rsqrtf(__fadd_rn(var[i / dim], eps));
        float y = round_to(__fmul_rn(load(h, i), r), h);
        store(out, i, round_to(__fmul_rn(load(w, i % dim), y), h));
    }
}

// out = round(round(silu(g)) · u), silu(g) = g / (1 + exp(−g)) in fp32; out [n / width, width] contiguous, rows of g and
// u ldg and ldu elements apart (views of one fused gate/up GEMM's output, or contiguous: ld = width).
template <typename T>
__global__ void silu_mul(const T* g, const T* u, T* out, int64_t n, int64_t width, int64_t ldg, int64_t ldu) {
    GRID_STRIDE(i, n) {
        const int64_t r = i / width, c = i % width;
        float x = load(g, r * ldg + c);
        float s = round_to(__fdiv_rn(x, __fadd_rn(1.0f, expf(-x))), g);
        store(out, i, round_to(__fmul_rn(s, load(u, r * ldu + c)), g));
    }
}

// One decode token per row: q [B, H·D] → qo [B, H, D] rotated; k [B, KH·D] rotated into keys[b, kh, pos, :], v copied
// into values[b, kh, pos, :] (keys/values [B, KH, C, D] contiguous), pos = *position. Rows of q, k and v are ldq, ldk
// and ldv elements apart (views of one fused q/k/v GEMM's output, or contiguous). Rotation as ApplyRope:
// round(round(x·cos) + round(rotate_half(x)·sin)), rotate_half(x)[d] = −x[d + D/2] for d < D/2, else x[d − D/2].
template <typename T>
__global__ void rope_decode(const T* q, const T* k, const T* v, int64_t ldq, int64_t ldk, int64_t ldv, const T* cosv, const T* sinv, T* qo,
                            T* keys, T* values, const int64_t* position, int64_t rows, int heads, int kv_heads, int dim, int64_t capacity) {
    const int all = heads + 2 * kv_heads, half = dim / 2;
    const int64_t n = rows * all * dim, pos = *position;
    GRID_STRIDE(i, n) {
        const int d = static_cast<int>(i % dim);
        const int64_t t = i / dim;
        const int head = static_cast<int>(t % all);
        const int64_t b = t / all;
        if (head >= heads + kv_heads) {
            const int64_t kh = head - heads - kv_heads;
            store(values, ((b * kv_heads + kh) * capacity + pos) * dim + d, load(v, b * ldv + kh * dim + d));
            continue;
        }
        const T* src = head < heads ? q + b * ldq + head * dim : k + b * ldk + (head - heads) * dim;
        const float x = load(src, d);
        const float rh = d < half ? -load(src, d + half) : load(src, d - half);
        const float c = load(cosv, b * dim + d), s = load(sinv, b * dim + d);
        const float y = round_to(__fadd_rn(round_to(__fmul_rn(x, c), src), round_to(__fmul_rn(rh, s), src)), src);
        if (head < heads) store(qo, (b * heads + head) * dim + d, y);
        else store(keys, ((b * kv_heads + (head - heads)) * capacity + pos) * dim + d, y);
    }
}

// The bf16 kernels above with eight elements per thread through 16-byte loads and stores (the decode step's tensors
// are large and contiguous; one bf16 per thread left silu_mul at ~1.3 TB/s). Element for element the same arithmetic,
// so the same bits; used when n is a multiple of 8 and every pointer is 16-byte aligned.
__device__ __forceinline__ const bf16* lanes(const uint4& v) { return reinterpret_cast<const bf16*>(&v); }
__device__ __forceinline__ bf16* lanes(uint4& v) { return reinterpret_cast<bf16*>(&v); }

__global__ void add_square_x8(const uint4* x, const uint4* r, uint4* h, float4* sq, int64_t n8) {
    GRID_STRIDE(i, n8) {
        const uint4 xv = x[i];
        const bf16* xa = lanes(xv);
        float v[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = load(xa, k);
        if (r != nullptr) {
            const uint4 rv = r[i];
            const bf16* ra = lanes(rv);
            uint4 hv;
            bf16* ha = lanes(hv);
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                v[k] = round_to(__fadd_rn(v[k], load(ra, k)), xa);
                store(ha, k, v[k]);
            }
            h[i] = hv;
        }
        sq[2 * i] = make_float4(__fmul_rn(v[0], v[0]), __fmul_rn(v[1], v[1]), __fmul_rn(v[2], v[2]), __fmul_rn(v[3], v[3]));
        sq[2 * i + 1] = make_float4(__fmul_rn(v[4], v[4]), __fmul_rn(v[5], v[5]), __fmul_rn(v[6], v[6]), __fmul_rn(v[7], v[7]));
    }
}

__global__ void rms_apply_x8(const uint4* h, const float* var, const uint4* w, uint4* out, float eps, int64_t n8, int64_t dim8) {
    GRID_STRIDE(i, n8) {
        const float r = rsqrtf(__fadd_rn(var[i / dim8], eps));
        const uint4 hv = h[i], wv = w[i % dim8];
        const bf16* ha = lanes(hv);
        const bf16* wa = lanes(wv);
        uint4 ov;
        bf16* oa = lanes(ov);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const float y = round_to(__fmul_rn(load(ha, k), r), ha);
            store(oa, k, round_to(__fmul_rn(load(wa, k), y), ha));
        }
        out[i] = ov;
    }
}

__global__ void silu_mul_x8(const uint4* g, const uint4* u, uint4* out, int64_t n8, int64_t width8, int64_t ldg8, int64_t ldu8) {
    GRID_STRIDE(i, n8) {
        const int64_t r = i / width8, c = i % width8;
        const uint4 gv = g[r * ldg8 + c], uv = u[r * ldu8 + c];
        const bf16* ga = lanes(gv);
        const bf16* ua = lanes(uv);
        uint4 ov;
        bf16* oa = lanes(ov);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const float x = load(ga, k);
            const float s = round_to(__fdiv_rn(x, __fadd_rn(1.0f, expf(-x))), ga);
            store(oa, k, round_to(__fmul_rn(s, load(ua, k)), ga));
        }
        out[i] = ov;
    }
}

inline bool aligned16(const void* p) { return p == nullptr || (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

int launched() { return cudaGetLastError() == cudaSuccess ? 0 : -1; }

// ---------------------------------------------------------------- block reductions (blockDim a multiple of 32, ≤ 1024)

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// Every thread gets the block's max (sum); sh holds ≥ 32 floats and may be reused right after.
__device__ float block_max(float v, float* sh) {
    v = warp_max(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    v = (threadIdx.x & 31) < (blockDim.x >> 5) ? sh[threadIdx.x & 31] : -INFINITY;
    return warp_max(v);
}
__device__ float block_sum(float v, float* sh) {
    v = warp_sum(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    v = (threadIdx.x & 31) < (blockDim.x >> 5) ? sh[threadIdx.x & 31] : 0.0f;
    return warp_sum(v);
}

// f(fp32 value) for every element of one row of n values, spread over the block's threads (16-byte loads for bf16 rows
// whose length is a multiple of 8 and whose start is 16-byte aligned).
template <typename F>
__device__ __forceinline__ void row_each(const bf16* row, int64_t n, F f) {
    if ((n & 7) == 0 && (reinterpret_cast<uintptr_t>(row) & 15u) == 0) {
        const uint4* r8 = reinterpret_cast<const uint4*>(row);
        for (int64_t i = threadIdx.x; i < n / 8; i += blockDim.x) {
            const uint4 v = r8[i];
            const bf16* a = lanes(v);
#pragma unroll
            for (int k = 0; k < 8; ++k) f(load(a, k));
        }
    } else {
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) f(load(row, i));
    }
}
template <typename F>
__device__ __forceinline__ void row_each(const float* row, int64_t n, F f) {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) f(row[i]);
}

// ---------------------------------------------------------------- lm_head log-softmax (HeadLogProbFunction)

// One block per row of logits [rows, V] (row stride ld): with x = fp32(logit)·inv_t (no multiply when !scaled, as
// ATen divides by a scalar: times its fp32 reciprocal), m = max x, lse = m + log Σ exp(x − m) (logsumexp's two passes,
// its sum in another order), lp = x[label] − lse (NaN for a label outside 0..V−1). With ent: the raw logits' entropy
// log Σ e − Σ e·(x' − m')/Σ e, e = exp(x' − m'), x' = fp32(logit) (Entropy.FromLogits: logsumexp − Σ softmax·x).
template <typename T>
__global__ void head_logsoftmax(const T* logits, int64_t ld, int64_t vocab, const int64_t* labels, float inv_t, int scaled, float* lp,
                                float* lse, float* ent) {
    __shared__ float sh[32];
    const T* row = logits + blockIdx.x * ld;
    float m = -INFINITY;
    row_each(row, vocab, [&](float x) { m = fmaxf(m, x); });
    m = block_max(m, sh);
    // logsumexp's rule: an infinite max is subtracted as 0. Rounding is monotonic, so max(x·c) = round(max(x)·c), c > 0.
    const float mr = isinf(m) ? 0.0f : m;
    const float ms = scaled ? __fmul_rn(mr, inv_t) : mr;
    float s = 0.0f, sr = 0.0f, wr = 0.0f;
    const bool want = ent != nullptr;
    row_each(row, vocab, [&](float x) {
        const float e = expf(__fsub_rn(scaled ? __fmul_rn(x, inv_t) : x, ms));
        s += e;
        if (want) {
            const float d = __fsub_rn(x, mr);
            const float er = scaled ? expf(d) : e;
            sr += er;
            wr += er * d;
        }
    });
    s = block_sum(s, sh);
    if (want) {
        sr = block_sum(sr, sh);
        wr = block_sum(wr, sh);
    }
    if (threadIdx.x == 0) {
        const float l = __fadd_rn(logf(s), ms);
        lse[blockIdx.x] = l;
        const int64_t label = labels[blockIdx.x];
        if (label < 0 || label >= vocab) lp[blockIdx.x] = __int_as_float(0x7fc00000);
        else {
            const float x = load(row, label);
            lp[blockIdx.x] = __fsub_rn(scaled ? __fmul_rn(x, inv_t) : x, l);
        }
        if (want) ent[blockIdx.x] = logf(sr) - wr / sr;
    }
}

// The logits' gradient, in place over logits [rows, cols] (row stride ld) of the vocabulary columns v0 … v0+cols−1:
// d = exp(x − lse)·(−g) (+ g at the label's column), then ·inv_t, rounded to T; x = fp32(logit)·inv_t. Op for op the
// chain HeadLogProbFunction.backward runs without the kernels (Plus_(−lse), exp_, mul_(−g), scatter_add_, DivS_, to).
// One block per row.
__device__ __forceinline__ float dlogit(float x, float neg_lse, float gr, bool at_label, float inv_t, int scaled) {
    if (scaled) x = __fmul_rn(x, inv_t);
    float d = __fmul_rn(expf(__fadd_rn(x, neg_lse)), -gr);
    if (at_label) d = __fadd_rn(d, gr);
    return scaled ? __fmul_rn(d, inv_t) : d;
}

template <typename T>
__global__ void head_dlogits(T* logits, int64_t ld, int64_t cols, const float* lse, const float* g, const int64_t* labels, int64_t v0,
                             float inv_t, int scaled) {
    const int64_t r = blockIdx.x;
    T* row = logits + r * ld;
    const float neg_lse = -lse[r], gr = g[r];
    const int64_t at = labels[r] - v0;               // the label's column, maybe outside this chunk
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        store(row, j, round_to(dlogit(load(row, j), neg_lse, gr, j == at, inv_t, scaled), row));
}

__global__ void head_dlogits_x8(uint4* logits, int64_t ld8, int64_t cols8, const float* lse, const float* g, const int64_t* labels, int64_t v0,
                                float inv_t, int scaled) {
    const int64_t r = blockIdx.x;
    uint4* row = logits + r * ld8;
    const float neg_lse = -lse[r], gr = g[r];
    const int64_t at = labels[r] - v0;
    for (int64_t j = threadIdx.x; j < cols8; j += blockDim.x) {
        uint4 v = row[j];
        bf16* a = lanes(v);
#pragma unroll
        for (int k = 0; k < 8; ++k) store(a, k, round_to(dlogit(load(a, k), neg_lse, gr, j * 8 + k == at, inv_t, scaled), a));
        row[j] = v;
    }
}

// ---------------------------------------------------------------- single-token decode attention (split over keys)

// Eight consecutive values from a 16-byte-aligned address (the host checks the alignment).
__device__ __forceinline__ void load8(const bf16* p, float* out) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const bf16* a = lanes(v);
#pragma unroll
    for (int k = 0; k < 8; ++k) out[k] = load(a, k);
}
__device__ __forceinline__ void load8(const float* p, float* out) {
    const float4 a = reinterpret_cast<const float4*>(p)[0], c = reinterpret_cast<const float4*>(p)[1];
    out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w; out[4] = c.x; out[5] = c.y; out[6] = c.z; out[7] = c.w;
}

constexpr int kAttnKeys = 128;   // keys per block (one per thread in the score pass)
constexpr int kAttnMaxGroup = 16;
constexpr int kAttnMaxDim = 256;

// One decode query per row against the static cache: q [B, KH·G, D] (contiguous), keys/values [B, KH, C, D]
// (contiguous), valid [B, C] bool. A block takes kv head kh of row b and the keys split·128 … +127 that are ≤ *position
// (the step's own key is written before attention) and valid; for each of the G query heads of that kv head it writes
// the split's max score m, Σ exp(s − m) and Σ exp(s − m)·v (fp32) to the workspace; decode_attn_combine merges the
// splits. Scores s = (q·k)·scale in fp32, softmax and P·V in fp32 (no bf16 rounding of P).
template <typename T, int MaxG>
__global__ void __launch_bounds__(kAttnKeys) decode_attn_split(const T* q, const T* keys, const T* values, const bool* valid, const int64_t* position, int kv_heads,
                                  int group, int dim, int64_t capacity, int splits, float scale, float* ws_ml, float* ws_o) {
    extern __shared__ float attn_smem[];             // q of the group [G, D], then probabilities [G, 128]
    float* qs = attn_smem;
    float* ps = attn_smem + group * dim;
    __shared__ float red[MaxG];
    const int64_t bk = blockIdx.x;                   // b · KH + kh
    const int split = blockIdx.y;
    const int64_t b = bk / kv_heads;
    const int64_t len = *position + 1;
    const int64_t k0 = static_cast<int64_t>(split) * kAttnKeys;
    if (k0 >= len) return;                           // the combine reads only the splits below len
    const int t = threadIdx.x;
    const T* qrow = q + bk * group * dim;            // heads kh·G … kh·G+G−1 of row b
    for (int i = t; i < group * dim; i += blockDim.x) qs[i] = load(qrow, i);
    __syncthreads();

    // Scores: thread t takes key k0 + t.
    const int64_t key = k0 + t;
    const bool live = key < len && valid[b * capacity + key];
    float acc[MaxG];
#pragma unroll
    for (int h = 0; h < MaxG; ++h) acc[h] = 0.0f;
    if (live) {
        const T* kr = keys + (bk * capacity + key) * dim;
#pragma unroll 2
        for (int d0 = 0; d0 < dim; d0 += 8) {
            float kv[8];
            load8(kr + d0, kv);
#pragma unroll
            for (int h = 0; h < MaxG; ++h) {
                if (h < group) {
                    // Every thread reads the same q: 16-byte broadcasts, a quarter of the shared-memory instructions.
                    const float4 qa = *reinterpret_cast<const float4*>(qs + h * dim + d0);
                    const float4 qb = *reinterpret_cast<const float4*>(qs + h * dim + d0 + 4);
                    acc[h] = fmaf(qa.x, kv[0], acc[h]); acc[h] = fmaf(qa.y, kv[1], acc[h]);
                    acc[h] = fmaf(qa.z, kv[2], acc[h]); acc[h] = fmaf(qa.w, kv[3], acc[h]);
                    acc[h] = fmaf(qb.x, kv[4], acc[h]); acc[h] = fmaf(qb.y, kv[5], acc[h]);
                    acc[h] = fmaf(qb.z, kv[6], acc[h]); acc[h] = fmaf(qb.w, kv[7], acc[h]);
                }
            }
        }
    }
    const int warps = blockDim.x >> 5, warp = t >> 5, lane = t & 31;
#pragma unroll
    for (int h = 0; h < MaxG; ++h) {
        if (h < group) {
            acc[h] = live ? acc[h] * scale : -INFINITY;
            const float wm = warp_max(acc[h]);
            if (lane == 0) ps[h * kAttnKeys + warp] = wm;   // per-warp maxima, parked in ps for a moment
        }
    }
    __syncthreads();
    if (t < group) {
        float m = -INFINITY;
        for (int w = 0; w < warps; ++w) m = fmaxf(m, ps[t * kAttnKeys + w]);
        red[t] = m;
    }
    __syncthreads();
#pragma unroll
    for (int h = 0; h < MaxG; ++h)
        if (h < group) ps[h * kAttnKeys + t] = live ? expf(acc[h] - red[h]) : 0.0f;
    __syncthreads();
    const int n = static_cast<int>(len - k0 < kAttnKeys ? len - k0 : kAttnKeys);
    if (t < group) {
        float l = 0.0f;
        for (int j = 0; j < n; ++j) l += ps[t * kAttnKeys + j];
        float* ml = ws_ml + ((bk * splits + split) * group + t) * 2;
        ml[0] = red[t];
        ml[1] = l;
    }
    // P·V: thread t takes dimension t (and t + blockDim, …) for every head of the group.
    for (int d = t; d < dim; d += blockDim.x) {
        float o[MaxG];
#pragma unroll
        for (int h = 0; h < MaxG; ++h) o[h] = 0.0f;
        const T* vcol = values + (bk * capacity + k0) * dim + d;
        // Four keys at a time: one 16-byte broadcast of each head's probabilities (zero beyond n: the tail of ps
        // holds 0 for keys past len, written above; past the block's 128 keys nothing is read).
        for (int j = 0; j < n; j += 4) {
            float v[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) v[e] = j + e < n ? load(vcol, static_cast<int64_t>(j + e) * dim) : 0.0f;
#pragma unroll
            for (int h = 0; h < MaxG; ++h) {
                if (h < group) {
                    const float4 p4 = *reinterpret_cast<const float4*>(ps + h * kAttnKeys + j);
                    o[h] = fmaf(p4.x, v[0], o[h]); o[h] = fmaf(p4.y, v[1], o[h]);
                    o[h] = fmaf(p4.z, v[2], o[h]); o[h] = fmaf(p4.w, v[3], o[h]);
                }
            }
        }
        float* wo = ws_o + ((bk * splits + split) * group) * dim + d;
#pragma unroll
        for (int h = 0; h < MaxG; ++h)
            if (h < group) wo[h * dim] = o[h];
    }
}

// Merges the splits of decode_attn_split: one block per (row, query head), one thread per dimension. out [B, H, D].
template <typename T>
__global__ void decode_attn_combine(const float* ws_ml, const float* ws_o, const int64_t* position, int group, int dim, int splits, T* out) {
    const int64_t rh = blockIdx.x;                   // (b · KH + kh) · G + gi = b · H + h
    const int64_t bk = rh / group;
    const int gi = static_cast<int>(rh % group);
    const int64_t len = *position + 1;
    const int used = static_cast<int>((len + kAttnKeys - 1) / kAttnKeys < splits ? (len + kAttnKeys - 1) / kAttnKeys : splits);
    float mx = -INFINITY;
    for (int s = 0; s < used; ++s) mx = fmaxf(mx, ws_ml[((bk * splits + s) * group + gi) * 2]);
    for (int d = threadIdx.x; d < dim; d += blockDim.x) {
        float l = 0.0f, o = 0.0f;
        for (int s = 0; s < used; ++s) {
            const float* ml = ws_ml + ((bk * splits + s) * group + gi) * 2;
            if (ml[0] == -INFINITY) continue;        // a split without a valid key
            const float c = expf(ml[0] - mx);
            l = fmaf(ml[1], c, l);
            o = fmaf(ws_o[((bk * splits + s) * group + gi) * dim + d], c, o);
        }
        store(out, rh * dim + d, round_to(o / l, out));
    }
}

}  // namespace

// dtype: 0 = float32, 1 = bfloat16. Each returns 0, or -1 when the launch failed (cudaGetLastError).
extern "C" {

int lmmr1_k_add_square(int dtype, const void* x, const void* r, void* h, float* sq, int64_t n, void* stream) {
    auto st = static_cast<cudaStream_t>(stream);
    if (dtype == 1 && n % 8 == 0 && aligned16(x) && aligned16(r) && aligned16(h) && aligned16(sq))
        add_square_x8<<<blocks_for(n / 8), 256, 0, st>>>(static_cast<const uint4*>(x), static_cast<const uint4*>(r), static_cast<uint4*>(h),
                                                       reinterpret_cast<float4*>(sq), n / 8);
    else if (dtype == 1) add_square<bf16><<<blocks_for(n), 256, 0, st>>>(static_cast<const bf16*>(x), static_cast<const bf16*>(r), static_cast<bf16*>(h), sq, n);
    else add_square<float><<<blocks_for(n), 256, 0, st>>>(static_cast<const float*>(x), static_cast<const float*>(r), static_cast<float*>(h), sq, n);
    return launched();
}

int lmmr1_k_rms_apply(int dtype, const void* h, const float* var, const void* w, void* out, float eps, int64_t n, int64_t dim, void* stream) {
    auto st = static_cast<cudaStream_t>(stream);
    if (dtype == 1 && n % 8 == 0 && dim % 8 == 0 && aligned16(h) && aligned16(w) && aligned16(out))
        rms_apply_x8<<<blocks_for(n / 8), 256, 0, st>>>(static_cast<const uint4*>(h), var, static_cast<const uint4*>(w), static_cast<uint4*>(out), eps,
                                                      n / 8, dim / 8);
    else if (dtype == 1) rms_apply<bf16><<<blocks_for(n), 256, 0, st>>>(static_cast<const bf16*>(h), var, static_cast<const bf16*>(w), static_cast<bf16*>(out), eps, n, dim);
    else rms_apply<float><<<blocks_for(n), 256, 0, st>>>(static_cast<const float*>(h), var, static_cast<const float*>(w), static_cast<float*>(out), eps, n, dim);
    return launched();
}

int lmmr1_k_silu_mul(int dtype, const void* g, const void* u, void* out, int64_t n, int64_t width, int64_t ldg, int64_t ldu, void* stream) {
    auto st = static_cast<cudaStream_t>(stream);
    if (dtype == 1 && width % 8 == 0 && ldg % 8 == 0 && ldu % 8 == 0 && aligned16(g) && aligned16(u) && aligned16(out))
        silu_mul_x8<<<blocks_for(n / 8), 256, 0, st>>>(static_cast<const uint4*>(g), static_cast<const uint4*>(u), static_cast<uint4*>(out), n / 8,
                                                     width / 8, ldg / 8, ldu / 8);
    else if (dtype == 1)
        silu_mul<bf16><<<blocks_for(n), 256, 0, st>>>(static_cast<const bf16*>(g), static_cast<const bf16*>(u), static_cast<bf16*>(out), n, width, ldg, ldu);
    else silu_mul<float><<<blocks_for(n), 256, 0, st>>>(static_cast<const float*>(g), static_cast<const float*>(u), static_cast<float*>(out), n, width, ldg, ldu);
    return launched();
}

int lmmr1_k_rope_decode(int dtype, const void* q, const void* k, const void* v, int64_t ldq, int64_t ldk, int64_t ldv, const void* cosv,
                        const void* sinv, void* qo, void* keys, void* values, const int64_t* position, int64_t rows, int heads, int kv_heads,
                        int dim, int64_t capacity, void* stream) {
    auto st = static_cast<cudaStream_t>(stream);
    int64_t n = rows * (heads + 2 * kv_heads) * dim;
    if (dtype == 1)
        rope_decode<bf16><<<blocks_for(n), 256, 0, st>>>(static_cast<const bf16*>(q), static_cast<const bf16*>(k), static_cast<const bf16*>(v),
                                                         ldq, ldk, ldv, static_cast<const bf16*>(cosv), static_cast<const bf16*>(sinv), static_cast<bf16*>(qo),
                                                         static_cast<bf16*>(keys), static_cast<bf16*>(values), position, rows, heads, kv_heads, dim, capacity);
    else
        rope_decode<float><<<blocks_for(n), 256, 0, st>>>(static_cast<const float*>(q), static_cast<const float*>(k), static_cast<const float*>(v),
                                                          ldq, ldk, ldv, static_cast<const float*>(cosv), static_cast<const float*>(sinv), static_cast<float*>(qo),
                                                          static_cast<float*>(keys), static_cast<float*>(values), position, rows, heads, kv_heads, dim, capacity);
    return launched();
}


// lm_head log-softmax rows (head_logsoftmax); ent may be null.
int lmmr1_k_head_logsoftmax(int dtype, const void* logits, int64_t ld, int64_t rows, int64_t vocab, const int64_t* labels, float inv_t,
                            int scaled, float* lp, float* lse, float* ent, void* stream) {
    auto st = static_cast<cudaStream_t>(stream);
    if (rows == 0) return 0;
    if (dtype == 1) head_logsoftmax<bf16><<<static_cast<unsigned>(rows), 512, 0, st>>>(static_cast<const bf16*>(logits), ld, vocab, labels, inv_t, scaled, lp, lse, ent);
    else head_logsoftmax<float><<<static_cast<unsigned>(rows), 512, 0, st>>>(static_cast<const float*>(logits), ld, vocab, labels, inv_t, scaled, lp, lse, ent);
    return launched();
}

// The logits' gradient in place (head_dlogits).
int lmmr1_k_head_dlogits(int dtype, void* logits, int64_t ld, int64_t rows, int64_t cols, const float* lse, const float* g, const int64_t* labels,
                         int64_t v0, float inv_t, int scaled, void* stream) {
    auto st = static_cast<cudaStream_t>(stream);
    if (rows == 0 || cols == 0) return 0;
    const unsigned grid = static_cast<unsigned>(rows);
    if (dtype == 1 && cols % 8 == 0 && ld % 8 == 0 && aligned16(logits))
        head_dlogits_x8<<<grid, 256, 0, st>>>(static_cast<uint4*>(logits), ld / 8, cols / 8, lse, g, labels, v0, inv_t, scaled);
    else if (dtype == 1) head_dlogits<bf16><<<grid, 256, 0, st>>>(static_cast<bf16*>(logits), ld, cols, lse, g, labels, v0, inv_t, scaled);
    else head_dlogits<float><<<grid, 256, 0, st>>>(static_cast<float*>(logits), ld, cols, lse, g, labels, v0, inv_t, scaled);
    return launched();
}

// Keys per split of the decode attention (the workspace the caller allocates has ceil(capacity / this) splits).
int lmmr1_k_decode_attention_split_keys() { return kAttnKeys; }

// Single-token decode attention (decode_attn_split + decode_attn_combine). Returns -2 for a shape the kernels do not
// take (group > 16, dim > 256 or not a multiple of 8, unaligned pointers): the caller keeps its SDPA path.
int lmmr1_k_decode_attention(int dtype, const void* q, const void* keys, const void* values, const bool* valid, const int64_t* position,
                             int64_t rows, int kv_heads, int group, int dim, int64_t capacity, float scale, float* ws_ml, float* ws_o, void* out,
                             void* stream) {
    if (group < 1 || group > kAttnMaxGroup || dim < 8 || dim > kAttnMaxDim || dim % 8 != 0) return -2;
    if (!aligned16(q) || !aligned16(keys) || !aligned16(values)) return -2;
    auto st = static_cast<cudaStream_t>(stream);
    const int splits = static_cast<int>((capacity + kAttnKeys - 1) / kAttnKeys);
    const dim3 grid(static_cast<unsigned>(rows * kv_heads), static_cast<unsigned>(splits));
    const size_t smem = static_cast<size_t>(group) * (dim + kAttnKeys) * sizeof(float);   // ≤ 24 KiB: no opt-in needed
    const int threads = dim < 32 ? 32 : (dim + 31) / 32 * 32;
    // Eight accumulators per thread when the group allows (Qwen2.5-VL-3B: 16 heads over 2), else sixteen.
    if (dtype == 1) {
        if (group <= 8)
            decode_attn_split<bf16, 8><<<grid, kAttnKeys, smem, st>>>(static_cast<const bf16*>(q), static_cast<const bf16*>(keys), static_cast<const bf16*>(values),
                                                                   valid, position, kv_heads, group, dim, capacity, splits, scale, ws_ml, ws_o);
        else
            decode_attn_split<bf16, 16><<<grid, kAttnKeys, smem, st>>>(static_cast<const bf16*>(q), static_cast<const bf16*>(keys), static_cast<const bf16*>(values),
                                                                    valid, position, kv_heads, group, dim, capacity, splits, scale, ws_ml, ws_o);
        decode_attn_combine<bf16><<<static_cast<unsigned>(rows * kv_heads * group), threads, 0, st>>>(ws_ml, ws_o, position, group, dim, splits,
                                                                                                     static_cast<bf16*>(out));
    } else {
        if (group <= 8)
            decode_attn_split<float, 8><<<grid, kAttnKeys, smem, st>>>(static_cast<const float*>(q), static_cast<const float*>(keys), static_cast<const float*>(values),
                                                                    valid, position, kv_heads, group, dim, capacity, splits, scale, ws_ml, ws_o);
        else
            decode_attn_split<float, 16><<<grid, kAttnKeys, smem, st>>>(static_cast<const float*>(q), static_cast<const float*>(keys), static_cast<const float*>(values),
                                                                     valid, position, kv_heads, group, dim, capacity, splits, scale, ws_ml, ws_o);
        decode_attn_combine<float><<<static_cast<unsigned>(rows * kv_heads * group), threads, 0, st>>>(ws_ml, ws_o, position, group, dim, splits,
                                                                                                      static_cast<float*>(out));
    }
    return launched();
}

}  // extern "C"
