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

// out = round(round(silu(g)) · u), silu(g) = g / (1 + exp(−g)) in fp32.
template <typename T>
__global__ void silu_mul(const T* g, const T* u, T* out, int64_t n) {
    GRID_STRIDE(i, n) {
        float x = load(g, i);
        float s = round_to(__fdiv_rn(x, __fadd_rn(1.0f, expf(-x))), g);
        store(out, i, round_to(__fmul_rn(s, load(u, i)), g));
    }
}

// One decode token per row: q [B, H·D] → qo [B, H, D] rotated; k [B, KH·D] rotated into keys[b, kh, pos, :], v copied
// into values[b, kh, pos, :] (keys/values [B, KH, C, D] contiguous), pos = *position. Rotation as ApplyRope:
// round(round(x·cos) + round(rotate_half(x)·sin)), rotate_half(x)[d] = −x[d + D/2] for d < D/2, else x[d − D/2].
template <typename T>
__global__ void rope_decode(const T* q, const T* k, const T* v, const T* cosv, const T* sinv, T* qo, T* keys, T* values,
                            const int64_t* position, int64_t rows, int heads, int kv_heads, int dim, int64_t capacity) {
    const int all = heads + 2 * kv_heads, half = dim / 2;
    const int64_t n = rows * all * dim, pos = *position;
    GRID_STRIDE(i, n) {
        const int d = static_cast<int>(i % dim);
        const int64_t t = i / dim;
        const int head = static_cast<int>(t % all);
        const int64_t b = t / all;
        if (head >= heads + kv_heads) {
            const int64_t kh = head - heads - kv_heads;
            store(values, ((b * kv_heads + kh) * capacity + pos) * dim + d, load(v, (b * kv_heads + kh) * dim + d));
            continue;
        }
        const T* src = head < heads ? q + (b * heads + head) * dim : k + (b * kv_heads + (head - heads)) * dim;
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

__global__ void silu_mul_x8(const uint4* g, const uint4* u, uint4* out, int64_t n8) {
    GRID_STRIDE(i, n8) {
        const uint4 gv = g[i], uv = u[i];
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

int lmmr1_k_silu_mul(int dtype, const void* g, const void* u, void* out, int64_t n, void* stream) {
    auto st = static_cast<cudaStream_t>(stream);
    if (dtype == 1 && n % 8 == 0 && aligned16(g) && aligned16(u) && aligned16(out))
        silu_mul_x8<<<blocks_for(n / 8), 256, 0, st>>>(static_cast<const uint4*>(g), static_cast<const uint4*>(u), static_cast<uint4*>(out), n / 8);
    else if (dtype == 1) silu_mul<bf16><<<blocks_for(n), 256, 0, st>>>(static_cast<const bf16*>(g), static_cast<const bf16*>(u), static_cast<bf16*>(out), n);
    else silu_mul<float><<<blocks_for(n), 256, 0, st>>>(static_cast<const float*>(g), static_cast<const float*>(u), static_cast<float*>(out), n);
    return launched();
}

int lmmr1_k_rope_decode(int dtype, const void* q, const void* k, const void* v, const void* cosv, const void* sinv, void* qo, void* keys,
                        void* values, const int64_t* position, int64_t rows, int heads, int kv_heads, int dim, int64_t capacity, void* stream) {
    auto st = static_cast<cudaStream_t>(stream);
    int64_t n = rows * (heads + 2 * kv_heads) * dim;
    if (dtype == 1)
        rope_decode<bf16><<<blocks_for(n), 256, 0, st>>>(static_cast<const bf16*>(q), static_cast<const bf16*>(k), static_cast<const bf16*>(v),
                                                         static_cast<const bf16*>(cosv), static_cast<const bf16*>(sinv), static_cast<bf16*>(qo),
                                                         static_cast<bf16*>(keys), static_cast<bf16*>(values), position, rows, heads, kv_heads, dim, capacity);
    else
        rope_decode<float><<<blocks_for(n), 256, 0, st>>>(static_cast<const float*>(q), static_cast<const float*>(k), static_cast<const float*>(v),
                                                          static_cast<const float*>(cosv), static_cast<const float*>(sinv), static_cast<float*>(qo),
                                                          static_cast<float*>(keys), static_cast<float*>(values), position, rows, heads, kv_heads, dim, capacity);
    return launched();
}

}  // extern "C"
