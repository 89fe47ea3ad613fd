extension KernelSource {
    /// Flash-style attention (online softmax over key tiles, FlashAttention-2 register reuse) on the
    /// tensor cores through `mma.sync.m16n8k16` (fp16 inputs, fp32 accumulation and softmax).
    ///
    /// Q `[B, Nq, H·D]`, K and V `[B, Nk, H·D]`, O like Q. A block of 4 warps owns 64 queries of one
    /// (batch, head); each warp 16 rows. Key/value tiles of 64 rows are staged in shared memory.
    /// `DP` is the head dimension padded to 64 or 128 (zero-filled), so any D ≤ 128 works; `vec`
    /// selects 16-byte tile loads (D and H·D multiples of 8).
    static let attention = #"""
__device__ __forceinline__ unsigned pack2(u16 lo, u16 hi) { return (unsigned)lo | ((unsigned)hi << 16); }

#ifndef SSD_EMULATION
__device__ __forceinline__ void mma16816(float *c, const unsigned *a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

template <int DP>
__device__ __forceinline__ void flash_attention(const u16 *__restrict__ Q, const u16 *__restrict__ K, const u16 *__restrict__ V,
                                                u16 *__restrict__ O, int Nq, int Nk, int H, int D, float scaleLog2,
                                                int causal, int vec, u16 *Ks, u16 *Vs) {
    const int BM = 64, BN = 64, LD = DP + 8;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BM;
    const i64 rowStride = (i64)H * D;
    const u16 *Qb = Q + (i64)b * Nq * rowStride + (i64)h * D;
    const u16 *Kb = K + (i64)b * Nk * rowStride + (i64)h * D;
    const u16 *Vb = V + (i64)b * Nk * rowStride + (i64)h * D;
    u16 *Ob = O + (i64)b * Nq * rowStride + (i64)h * D;
    const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;

    unsigned qa[DP / 16][4];
    #pragma unroll
    for (int ks = 0; ks < DP / 16; ++ks) {
        #pragma unroll
        for (int half = 0; half < 2; ++half) {
            int d = ks * 16 + half * 8 + t * 2;
            u16 a0 = 0, a1 = 0, c0 = 0, c1 = 0;
            if (r0 < Nq) { if (d < D) a0 = Qb[r0 * rowStride + d]; if (d + 1 < D) a1 = Qb[r0 * rowStride + d + 1]; }
            if (r1 < Nq) { if (d < D) c0 = Qb[r1 * rowStride + d]; if (d + 1 < D) c1 = Qb[r1 * rowStride + d + 1]; }
            qa[ks][half * 2] = pack2(a0, a1);
            qa[ks][half * 2 + 1] = pack2(c0, c1);
        }
    }

    float o[DP / 8][4];
    #pragma unroll
    for (int dn = 0; dn < DP / 8; ++dn) { o[dn][0] = 0.0f; o[dn][1] = 0.0f; o[dn][2] = 0.0f; o[dn][3] = 0.0f; }
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.0f, l1 = 0.0f;

    const int kEnd = causal ? min(Nk, q0 + BM) : Nk;
    for (int k0 = 0; k0 < kEnd; k0 += BN) {
        __syncthreads();
        if (vec) {
            for (int idx = tid; idx < BN * (DP / 8); idx += blockDim.x) {
                int r = idx / (DP / 8), c = (idx % (DP / 8)) * 8;
                U128 kv = {0u, 0u, 0u, 0u}, vv = {0u, 0u, 0u, 0u};
                if (k0 + r < Nk && c < D) {
                    kv = *(const U128 *)(Kb + (i64)(k0 + r) * rowStride + c);
                    vv = *(const U128 *)(Vb + (i64)(k0 + r) * rowStride + c);
                }
                *(U128 *)(Ks + r * LD + c) = kv;
                *(U128 *)(Vs + r * LD + c) = vv;
            }
        } else {
            for (int idx = tid; idx < BN * DP; idx += blockDim.x) {
                int r = idx / DP, c = idx % DP;
                u16 kv = 0, vv = 0;
                if (k0 + r < Nk && c < D) {
                    kv = Kb[(i64)(k0 + r) * rowStride + c];
                    vv = Vb[(i64)(k0 + r) * rowStride + c];
                }
                Ks[r * LD + c] = kv;
                Vs[r * LD + c] = vv;
            }
        }
        __syncthreads();

        float s[BN / 8][4];
        #pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt) { s[nt][0] = 0.0f; s[nt][1] = 0.0f; s[nt][2] = 0.0f; s[nt][3] = 0.0f; }
        #pragma unroll
        for (int ks = 0; ks < DP / 16; ++ks) {
            #pragma unroll
            for (int nt = 0; nt < BN / 8; ++nt) {
                const u16 *kp = Ks + (nt * 8 + g) * LD + ks * 16 + t * 2;
                mma16816(s[nt], qa[ks], *(const unsigned *)kp, *(const unsigned *)(kp + 8));
            }
        }

        float mx0 = NEG_INF, mx1 = NEG_INF;
        #pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt) {
            #pragma unroll
            for (int e = 0; e < 4; ++e) {
                int key = k0 + nt * 8 + t * 2 + (e & 1);
                int row = e < 2 ? r0 : r1;
                float v = s[nt][e] * scaleLog2;
                if (key >= Nk || (causal && key > row)) v = NEG_INF;
                s[nt][e] = v;
                if (e < 2) mx0 = fmaxf(mx0, v); else mx1 = fmaxf(mx1, v);
            }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float base0 = mn0 == NEG_INF ? 0.0f : mn0, base1 = mn1 == NEG_INF ? 0.0f : mn1;
        const float al0 = exp2f(m0 - base0), al1 = exp2f(m1 - base1);
        m0 = mn0; m1 = mn1;
        l0 *= al0; l1 *= al1;
        #pragma unroll
        for (int dn = 0; dn < DP / 8; ++dn) { o[dn][0] *= al0; o[dn][1] *= al0; o[dn][2] *= al1; o[dn][3] *= al1; }

        unsigned pa[BN / 16][4];
        #pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt) {
            float p0 = exp2f(s[nt][0] - base0), p1 = exp2f(s[nt][1] - base0);
            float p2 = exp2f(s[nt][2] - base1), p3 = exp2f(s[nt][3] - base1);
            l0 += p0 + p1; l1 += p2 + p3;
            pa[nt / 2][(nt & 1) * 2] = pack2(f2h(p0), f2h(p1));
            pa[nt / 2][(nt & 1) * 2 + 1] = pack2(f2h(p2), f2h(p3));
        }
        #pragma unroll
        for (int j = 0; j < BN / 16; ++j) {
            const int kr = j * 16 + t * 2;
            #pragma unroll
            for (int dn = 0; dn < DP / 8; ++dn) {
                const int dc = dn * 8 + g;
                unsigned b0 = pack2(Vs[kr * LD + dc], Vs[(kr + 1) * LD + dc]);
                unsigned b1 = pack2(Vs[(kr + 8) * LD + dc], Vs[(kr + 9) * LD + dc]);
                mma16816(o[dn], pa[j], b0, b1);
            }
        }
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    #pragma unroll
    for (int dn = 0; dn < DP / 8; ++dn) {
        const int d = dn * 8 + t * 2;
        if (r0 < Nq) {
            if (d < D) Ob[r0 * rowStride + d] = f2h(o[dn][0] * inv0);
            if (d + 1 < D) Ob[r0 * rowStride + d + 1] = f2h(o[dn][1] * inv0);
        }
        if (r1 < Nq) {
            if (d < D) Ob[r1 * rowStride + d] = f2h(o[dn][2] * inv1);
            if (d + 1 < D) Ob[r1 * rowStride + d + 1] = f2h(o[dn][3] * inv1);
        }
    }
}

extern "C" __global__ void __launch_bounds__(128) flash_attention_d64(const u16 *Q, const u16 *K, const u16 *V, u16 *O, int Nq, int Nk,
                                                                      int H, int D, float scaleLog2, int causal, int vec) {
    __shared__ __align__(16) u16 Ks[64 * 72];
    __shared__ __align__(16) u16 Vs[64 * 72];
    flash_attention<64>(Q, K, V, O, Nq, Nk, H, D, scaleLog2, causal, vec, Ks, Vs);
}

extern "C" __global__ void __launch_bounds__(128) flash_attention_d128(const u16 *Q, const u16 *K, const u16 *V, u16 *O, int Nq, int Nk,
                                                                       int H, int D, float scaleLog2, int causal, int vec) {
    __shared__ __align__(16) u16 Ks[64 * 136];
    __shared__ __align__(16) u16 Vs[64 * 136];
    flash_attention<128>(Q, K, V, O, Nq, Nk, H, D, scaleLog2, causal, vec, Ks, Vs);
}

"""#

    /// im2col for the fallback convolution (no cuDNN): NHWC x `[B, H, W, Cin]` → rows
    /// `[rowStart, rowStart+rows)` of `[B·Ho·Wo, kh·kw·Cin]`, channels moved in units of S bytes.
    static let convolution = #"""
template <int S> __global__ void im2col_kernel(const void *x, void *col, int H, int W, i64 Cu, int kh, int kw, int stride,
                                               int pad, int Ho, int Wo, i64 rowStart, i64 rows) {
    typedef typename Word<S>::type Wd;
    const Wd *s = (const Wd *)x; Wd *d = (Wd *)col;
    const i64 K = (i64)kh * kw * Cu;
    GRID_LOOP(i, rows * K) {
        i64 r = i / K, k = i - r * K;
        i64 m = rowStart + r;
        int ox = (int)(m % Wo); i64 t = m / Wo;
        int oy = (int)(t % Ho); i64 b = t / Ho;
        i64 cu = k % Cu; i64 kk = k / Cu;
        int kx = (int)(kk % kw), ky = (int)(kk / kw);
        int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
        Wd v;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = s[((b * H + iy) * W + ix) * Cu + cu];
        else { v = Wd(); }
        d[i] = v;
    }
}

"""#
}
