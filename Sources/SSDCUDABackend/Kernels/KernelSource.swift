/// CUDA C sources compiled at run time by NVRTC for the device's architecture (one program per
/// group, compiled on first use and cached for the life of the process). Kernels are templates over
/// the element type code (0 f32, 1 f16, 2 bf16, 3 i32, 4 i64) and are looked up through NVRTC name
/// expressions. No CUDA header is included: half/bfloat16 conversions are inline PTX. The few
/// inline-PTX helpers sit in `#ifndef SSD_EMULATION` blocks, so that the tests' CPU emulator
/// (Tests/SSDCUDABackendTests/KernelEmulator.swift) can compile the same sources with its own.
enum KernelGroup: String, CaseIterable, Sendable {
    case elementwise, normalization, attention, convolution
    /// fp16 vectorised kernels and the double-buffered attention (`KernelSource.fast`).
    case fast

    /// The source: the common prelude plus the group's kernels.
    var source: String {
        switch self {
        case .elementwise: return KernelSource.prelude + KernelSource.elementwise
        case .normalization: return KernelSource.prelude + KernelSource.normalization
        case .attention: return KernelSource.prelude + KernelSource.attention
        case .convolution: return KernelSource.prelude + KernelSource.convolution
        case .fast: return KernelSource.prelude + KernelSource.fast
        }
    }

    /// Every kernel instantiation of the group, as NVRTC name expressions.
    var nameExpressions: [String] {
        let floats = [0, 1, 2]
        switch self {
        case .elementwise:
            var names: [String] = []
            for ti in 0...4 { for to in floats { names.append("convert_kernel<\(ti),\(to)>") } }
            for t in floats {
                names.append("activation_kernel<\(t)>")
                names.append("geglu_kernel<\(t)>")
                names.append("affine_kernel<\(t)>")
                names.append("binary_kernel<\(t)>")
                names.append("bias_residual_kernel<\(t)>")
            }
            for s in [2, 4, 8, 16] {
                names.append("copy2d_kernel<\(s)>")
                names.append("upsample2x_kernel<\(s)>")
            }
            for s in [2, 4, 8] { names.append("permute_kernel<\(s)>") }
            names.append("embedding_kernel")
            return names
        case .normalization:
            var names: [String] = ["group_norm_finalize_kernel"]
            for t in floats {
                names.append("group_norm_partial_kernel<\(t)>")
                names.append("group_norm_apply_kernel<\(t)>")
                names.append("layer_norm_kernel<\(t)>")
                names.append("softmax_kernel<\(t)>")
            }
            return names
        case .attention:
            return ["flash_attention_d64", "flash_attention_d128"]
        case .convolution:
            return [2, 4, 8, 16].map { "im2col_kernel<\($0)>" }
        case .fast:
            return ["geglu_h8", "bias_residual_h8", "binary_h8", "group_norm_partial_h8", "group_norm_apply_h8",
                    "layer_norm_h8", "flash_attention_fast_d64", "flash_attention_fast_d64_w8",
                    "flash_attention_fast_d64_m32", "flash_attention_fast_d64_m32_w8"]
        }
    }
}

/// The CUDA C text of every kernel (see `KernelGroup`).
enum KernelSource {
    /// Types, conversions, element access by type code, grid-stride loops and reductions.
    static let prelude = #"""
typedef unsigned short u16;
typedef long long i64;
struct Dims6 { i64 v[6]; };
struct __align__(16) U128 { unsigned x, y, z, w; };
#define NEG_INF __int_as_float(0xff800000)
#define GRID_LOOP(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

#ifndef SSD_EMULATION  // the CPU emulator of the tests defines the inline-PTX helpers itself
__device__ __forceinline__ float h2f(u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ u16 f2h(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
#endif
__device__ __forceinline__ float b2f(u16 b) { return __uint_as_float(((unsigned)b) << 16); }
__device__ __forceinline__ u16 f2b(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);
    return (u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

template <int T> struct Elem;
template <> struct Elem<0> { typedef float type;
    static __device__ __forceinline__ float load(const float *p, i64 i) { return p[i]; }
    static __device__ __forceinline__ void store(float *p, i64 i, float v) { p[i] = v; } };
template <> struct Elem<1> { typedef u16 type;
    static __device__ __forceinline__ float load(const u16 *p, i64 i) { return h2f(p[i]); }
    static __device__ __forceinline__ void store(u16 *p, i64 i, float v) { p[i] = f2h(v); } };
template <> struct Elem<2> { typedef u16 type;
    static __device__ __forceinline__ float load(const u16 *p, i64 i) { return b2f(p[i]); }
    static __device__ __forceinline__ void store(u16 *p, i64 i, float v) { p[i] = f2b(v); } };
template <> struct Elem<3> { typedef int type;
    static __device__ __forceinline__ float load(const int *p, i64 i) { return (float)p[i]; }
    static __device__ __forceinline__ void store(int *p, i64 i, float v) { p[i] = (int)rintf(v); } };
template <> struct Elem<4> { typedef i64 type;
    static __device__ __forceinline__ float load(const i64 *p, i64 i) { return (float)p[i]; }
    static __device__ __forceinline__ void store(i64 *p, i64 i, float v) { p[i] = (i64)rintf(v); } };

template <int T> __device__ __forceinline__ float ldT(const void *p, i64 i) { return Elem<T>::load((const typename Elem<T>::type *)p, i); }
template <int T> __device__ __forceinline__ void stT(void *p, i64 i, float v) { Elem<T>::store((typename Elem<T>::type *)p, i, v); }
__device__ __forceinline__ float ldAny(const void *p, i64 i, int t) {
    switch (t) { case 0: return ldT<0>(p, i); case 1: return ldT<1>(p, i); case 2: return ldT<2>(p, i);
                 case 3: return ldT<3>(p, i); default: return ldT<4>(p, i); }
}
__device__ __forceinline__ void stAny(void *p, i64 i, int t, float v) {
    switch (t) { case 0: stT<0>(p, i, v); break; case 1: stT<1>(p, i, v); break; case 2: stT<2>(p, i, v); break;
                 case 3: stT<3>(p, i, v); break; default: stT<4>(p, i, v); break; }
}

template <int S> struct Word;
template <> struct Word<2> { typedef u16 type; };
template <> struct Word<4> { typedef unsigned type; };
template <> struct Word<8> { typedef unsigned long long type; };
template <> struct Word<16> { typedef U128 type; };

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

"""#
}
