extension KernelSource {
    /// The fast kernels (default; `SSD_CUDA_LEGACY_KERNELS=1` goes back to the grid-stride scalar
    /// kernels of the other groups, which stay as they are). All are fp16 only and move 8 halves
    /// (16 bytes) per access; the Swift side calls them only when the innermost extent is a multiple
    /// of 8 and every operand is fp16, otherwise the legacy kernel runs. Arithmetic (fp32, same
    /// formulas and order per element) matches the legacy kernels, except the layer-norm sums,
    /// which are added in a different order.
    ///
    /// `flash_attention_fast_d64` (head dim exactly 64; `SSD_CUDA_LEGACY_ATTENTION=1` turns it off
    /// alone) is the legacy flash kernel with K/V tiles copied by `cp.async` into two shared-memory
    /// stages (the next tile loads while this one is used) and the B fragments read with
    /// `ldmatrix` (`.trans` for V) instead of scalar shared-memory loads.
    static let fast = #"""
__device__ __forceinline__ void unpack8(const U128 &v, float *f) {
    f[0] = h2f((u16)(v.x & 0xffffu)); f[1] = h2f((u16)(v.x >> 16));
    f[2] = h2f((u16)(v.y & 0xffffu)); f[3] = h2f((u16)(v.y >> 16));
    f[4] = h2f((u16)(v.z & 0xffffu)); f[5] = h2f((u16)(v.z >> 16));
    f[6] = h2f((u16)(v.w & 0xffffu)); f[7] = h2f((u16)(v.w >> 16));
}
__device__ __forceinline__ unsigned packh2(float a, float b) { return (unsigned)f2h(a) | ((unsigned)f2h(b) << 16); }
__device__ __forceinline__ U128 pack8(const float *f) {
    U128 v;
    v.x = packh2(f[0], f[1]); v.y = packh2(f[2], f[3]); v.z = packh2(f[4], f[5]); v.w = packh2(f[6], f[7]);
    return v;
}
__device__ __forceinline__ float gelu_erf(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }
__device__ __forceinline__ float silu_f(float v) { return v / (1.0f + expf(-v)); }

// x [rows, 2n] -> y [rows, n] = x[:, :n] * GELU(x[:, n:]); n8 = n / 8.
__global__ void geglu_h8(const U128 *x, U128 *y, i64 rows, i64 n8) {
    GRID_LOOP(i, rows * n8) {
        i64 r = i / n8, j = i - r * n8;
        float h[8], g[8];
        unpack8(x[r * 2 * n8 + j], h);
        unpack8(x[r * 2 * n8 + n8 + j], g);
        #pragma unroll
        for (int k = 0; k < 8; ++k) h[k] = h[k] * gelu_erf(g[k]);
        y[i] = pack8(h);
    }
}

// y [rows, C] += bias[C] (optional) + residual [rows, C] (optional); c8 = C / 8.
__global__ void bias_residual_h8(U128 *y, const U128 *bias, const U128 *residual, i64 rows, i64 c8) {
    GRID_LOOP(i, rows * c8) {
        float v[8], t[8];
        unpack8(y[i], v);
        if (bias) {
            unpack8(bias[i % c8], t);
            #pragma unroll
            for (int k = 0; k < 8; ++k) v[k] += t[k];
        }
        if (residual) {
            unpack8(residual[i], t);
            #pragma unroll
            for (int k = 0; k < 8; ++k) v[k] += t[k];
        }
        y[i] = pack8(v);
    }
}

// y = a op b. rowBroadcast == 0: b like a. Otherwise a [B, P, C] and b [B, C] (b[batch, c] for every
// row of the batch); c8 = C / 8, p = P.
__global__ void binary_h8(const U128 *a, const U128 *b, U128 *y, i64 n8, int rowBroadcast, i64 p, i64 c8, int op) {
    GRID_LOOP(i, n8) {
        i64 bi = i;
        if (rowBroadcast) { i64 batch = i / (p * c8); bi = batch * c8 + i % c8; }
        float x[8], z[8];
        unpack8(a[i], x);
        unpack8(b[bi], z);
        #pragma unroll
        for (int k = 0; k < 8; ++k) {
            float r;
            switch (op) { case 0: r = x[k] + z[k]; break; case 1: r = x[k] - z[k]; break; case 2: r = x[k] * z[k]; break; default: r = x[k] / z[k]; }
            x[k] = r;
        }
        y[i] = pack8(x);
    }
}

// Group norm statistics, the legacy partial layout: grid (chunks, B);
// partial[((b*chunks + chunk)*C + c)*2 + {0,1}] = mean, M2 over the chunk's rows. Each thread owns 8 channels.
__global__ void group_norm_partial_h8(const U128 *x, float *partial, i64 HW, int C, int rowsPerChunk) {
    int chunk = blockIdx.x, b = blockIdx.y, chunks = gridDim.x, c8 = C / 8;
    i64 r0 = (i64)chunk * rowsPerChunk, r1 = min(HW, r0 + rowsPerChunk);
    float n = (float)(r1 - r0);
    for (int cv = threadIdx.x; cv < c8; cv += blockDim.x) {
        const i64 base = (i64)b * HW * c8 + cv;
        float sum[8], m2[8], v[8];
        #pragma unroll
        for (int k = 0; k < 8; ++k) { sum[k] = 0.0f; m2[k] = 0.0f; }
        #pragma unroll 4
        for (i64 r = r0; r < r1; ++r) {
            unpack8(x[base + r * c8], v);
            #pragma unroll
            for (int k = 0; k < 8; ++k) sum[k] += v[k];
        }
        #pragma unroll
        for (int k = 0; k < 8; ++k) sum[k] = sum[k] / n;
        #pragma unroll 4
        for (i64 r = r0; r < r1; ++r) {
            unpack8(x[base + r * c8], v);
            #pragma unroll
            for (int k = 0; k < 8; ++k) { float d = v[k] - sum[k]; m2[k] += d * d; }
        }
        float *o = partial + (((i64)b * chunks + chunk) * C + cv * 8) * 2;
        #pragma unroll
        for (int k = 0; k < 8; ++k) { o[2 * k] = sum[k]; o[2 * k + 1] = m2[k]; }
    }
}

// grid (blocks, B): y = (x - mean) * rstd * w + bias (then SiLU), w and bias fp16 [C]; c8 = C / 8.
__global__ void group_norm_apply_h8(const U128 *x, U128 *y, const float *stats, const U128 *w, const U128 *bias,
                                    i64 HW, int C, int G, int silu) {
    const int cpg = C / G, c8 = C / 8;
    GRID_LOOP(i, HW * c8) {
        i64 idx = (i64)blockIdx.y * HW * c8 + i;
        int cv = (int)(i % c8);
        float v[8], ww[8], bb[8];
        unpack8(x[idx], v);
        unpack8(w[cv], ww);
        unpack8(bias[cv], bb);
        // Groups are contiguous channel ranges: one division, then step to the next group where it starts.
        int grp = (cv * 8) / cpg, next = (grp + 1) * cpg;
        const float *st = stats + ((i64)blockIdx.y * G + grp) * 2;
        float mean = st[0], rstd = st[1];
        #pragma unroll
        for (int k = 0; k < 8; ++k) {
            if (cv * 8 + k == next) { next += cpg; st += 2; mean = st[0]; rstd = st[1]; }
            float t = (v[k] - mean) * rstd * ww[k] + bb[k];
            v[k] = silu ? silu_f(t) : t;
        }
        y[idx] = pack8(v);
    }
}

// One warp per row of C ≤ 2048 channels (c8 = C / 8 ≤ 256), kept in registers; w, bias fp16.
__global__ void layer_norm_h8(const U128 *x, U128 *y, const U128 *w, const U128 *bias, i64 rows, int C, float eps) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31, c8 = C / 8;
    if (row >= rows) return;
    const U128 *xr = x + row * c8;
    U128 cache[8];
    float s = 0.0f;
    #pragma unroll
    for (int k = 0; k < 8; ++k) {
        int cv = lane + k * 32;
        if (cv < c8) {
            cache[k] = xr[cv];
            float v[8];
            unpack8(cache[k], v);
            #pragma unroll
            for (int e = 0; e < 8; ++e) s += v[e];
        }
    }
    float mean = warp_sum(s) / C;
    float q = 0.0f;
    #pragma unroll
    for (int k = 0; k < 8; ++k) {
        int cv = lane + k * 32;
        if (cv < c8) {
            float v[8];
            unpack8(cache[k], v);
            #pragma unroll
            for (int e = 0; e < 8; ++e) { float d = v[e] - mean; q += d * d; }
        }
    }
    float rstd = rsqrtf(warp_sum(q) / C + eps);
    #pragma unroll
    for (int k = 0; k < 8; ++k) {
        int cv = lane + k * 32;
        if (cv < c8) {
            float v[8], ww[8], bb[8];
            unpack8(cache[k], v);
            unpack8(w[cv], ww);
            unpack8(bias[cv], bb);
            #pragma unroll
            for (int e = 0; e < 8; ++e) v[e] = (v[e] - mean) * rstd * ww[e] + bb[e];
            y[row * c8 + cv] = pack8(v);
        }
    }
}

// ---- Flash attention, head dim 64: cp.async double-buffered K/V tiles, ldmatrix fragments.

#ifndef SSD_EMULATION
__device__ __forceinline__ unsigned smem_u32(const void *p) {
    unsigned r;
    asm volatile("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
}
// 16 bytes global -> shared; bytes == 0 zero-fills the destination without reading.
__device__ __forceinline__ void cp_async16(unsigned dst, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_one() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }
__device__ __forceinline__ void ldsm_x4(unsigned &r0, unsigned &r1, unsigned &r2, unsigned &r3, unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(unsigned &r0, unsigned &r1, unsigned &r2, unsigned &r3, unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}
__device__ __forceinline__ void mma16816f(float *c, const unsigned *a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

#define FA_LD 72
// Rows [k0, k0+64) of K and V (64 halves each) into one stage by THREADS threads; rows >= Nk are zero-filled.
template <int THREADS>
__device__ __forceinline__ void fa_load_tile(u16 *Kd, u16 *Vd, const u16 *Kb, const u16 *Vb, i64 rowStride, int k0, int Nk, int tid) {
    #pragma unroll
    for (int i = 0; i < 512 / THREADS; ++i) {
        int idx = tid + i * THREADS, r = idx >> 3, c = (idx & 7) * 8;
        int key = k0 + r, ok = key < Nk;
        i64 off = (i64)(ok ? key : 0) * rowStride + c;
        cp_async16(smem_u32(Kd + r * FA_LD + c), Kb + off, ok ? 16 : 0);
        cp_async16(smem_u32(Vd + r * FA_LD + c), Vb + off, ok ? 16 : 0);
    }
}

// Q [B, Nq, H*64], K and V [B, Nk, H*64], O like Q; grid (ceil(Nq/(16*MT*WARPS)), H, B), 32*WARPS threads,
// each warp MT tiles of 16 query rows; all warps share the K/V stages (Ks, Vs: [2][64 * FA_LD] each).
// With MT = 2 every K/V fragment read from shared memory by ldmatrix feeds two mma instead of one
// (half the shared-memory traffic per multiply-add), for twice the accumulator registers.
template <int WARPS, int MT>
__device__ __forceinline__ void flash_attention_fast(const u16 *Q, const u16 *K, const u16 *V, u16 *O, int Nq, int Nk, int H,
                                                     float scaleLog2, int causal, u16 (*Ks)[64 * FA_LD], u16 (*Vs)[64 * FA_LD]) {
    const int BM = 16 * MT * WARPS, BN = 64, DP = 64, THREADS = 32 * WARPS;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int mi = lane >> 3, rr = lane & 7;
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BM;
    const i64 rowStride = (i64)H * DP;
    const u16 *Qb = Q + (i64)b * Nq * rowStride + (i64)h * DP;
    const u16 *Kb = K + (i64)b * Nk * rowStride + (i64)h * DP;
    const u16 *Vb = V + (i64)b * Nk * rowStride + (i64)h * DP;
    u16 *Ob = O + (i64)b * Nq * rowStride + (i64)h * DP;
    int r0[MT], r1[MT];
    #pragma unroll
    for (int mt = 0; mt < MT; ++mt) { r0[mt] = q0 + (warp * MT + mt) * 16 + g; r1[mt] = r0[mt] + 8; }

    const int kEnd = causal ? min(Nk, q0 + BM) : Nk;
    const int tiles = (kEnd + BN - 1) / BN;
    if (tiles > 0) { fa_load_tile<THREADS>(Ks[0], Vs[0], Kb, Vb, rowStride, 0, Nk, tid); cp_async_commit(); }

    unsigned qa[MT][DP / 16][4];
    #pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        #pragma unroll
        for (int ks = 0; ks < DP / 16; ++ks) {
            #pragma unroll
            for (int half = 0; half < 2; ++half) {
                int d = ks * 16 + half * 8 + t * 2;
                qa[mt][ks][half * 2] = r0[mt] < Nq ? *(const unsigned *)(Qb + (i64)r0[mt] * rowStride + d) : 0u;
                qa[mt][ks][half * 2 + 1] = r1[mt] < Nq ? *(const unsigned *)(Qb + (i64)r1[mt] * rowStride + d) : 0u;
            }
        }
    }

    float o[MT][DP / 8][4];
    float m0[MT], m1[MT], l0[MT], l1[MT];
    #pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        #pragma unroll
        for (int dn = 0; dn < DP / 8; ++dn) { o[mt][dn][0] = 0.0f; o[mt][dn][1] = 0.0f; o[mt][dn][2] = 0.0f; o[mt][dn][3] = 0.0f; }
        m0[mt] = NEG_INF; m1[mt] = NEG_INF; l0[mt] = 0.0f; l1[mt] = 0.0f;
    }

    for (int it = 0; it < tiles; ++it) {
        const int k0 = it * BN, st = it & 1;
        if (it + 1 < tiles) {
            fa_load_tile<THREADS>(Ks[st ^ 1], Vs[st ^ 1], Kb, Vb, rowStride, k0 + BN, Nk, tid);
            cp_async_commit();
            cp_async_wait_one();
        } else {
            cp_async_wait_all();
        }
        __syncthreads();
        const u16 *Kt = Ks[st], *Vt = Vs[st];

        float s[MT][BN / 8][4];
        #pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            #pragma unroll
            for (int nt = 0; nt < BN / 8; ++nt) { s[mt][nt][0] = 0.0f; s[mt][nt][1] = 0.0f; s[mt][nt][2] = 0.0f; s[mt][nt][3] = 0.0f; }
        }
        #pragma unroll
        for (int ks = 0; ks < DP / 16; ++ks) {
            #pragma unroll
            for (int np = 0; np < BN / 16; ++np) {
                unsigned b0, b1, b2, b3;
                ldsm_x4(b0, b1, b2, b3, smem_u32(Kt + (np * 16 + (mi >> 1) * 8 + rr) * FA_LD + ks * 16 + (mi & 1) * 8));
                #pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma16816f(s[mt][2 * np], qa[mt][ks], b0, b1);
                    mma16816f(s[mt][2 * np + 1], qa[mt][ks], b2, b3);
                }
            }
        }

        unsigned pa[MT][BN / 16][4];
        #pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            float mx0 = NEG_INF, mx1 = NEG_INF;
            #pragma unroll
            for (int nt = 0; nt < BN / 8; ++nt) {
                #pragma unroll
                for (int e = 0; e < 4; ++e) {
                    int key = k0 + nt * 8 + t * 2 + (e & 1);
                    int row = e < 2 ? r0[mt] : r1[mt];
                    float v = s[mt][nt][e] * scaleLog2;
                    if (key >= Nk || (causal && key > row)) v = NEG_INF;
                    s[mt][nt][e] = v;
                    if (e < 2) mx0 = fmaxf(mx0, v); else mx1 = fmaxf(mx1, v);
                }
            }
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            const float mn0 = fmaxf(m0[mt], mx0), mn1 = fmaxf(m1[mt], mx1);
            const float base0 = mn0 == NEG_INF ? 0.0f : mn0, base1 = mn1 == NEG_INF ? 0.0f : mn1;
            const float al0 = exp2f(m0[mt] - base0), al1 = exp2f(m1[mt] - base1);
            m0[mt] = mn0; m1[mt] = mn1;
            l0[mt] *= al0; l1[mt] *= al1;
            #pragma unroll
            for (int dn = 0; dn < DP / 8; ++dn) { o[mt][dn][0] *= al0; o[mt][dn][1] *= al0; o[mt][dn][2] *= al1; o[mt][dn][3] *= al1; }
            #pragma unroll
            for (int nt = 0; nt < BN / 8; ++nt) {
                float p0 = exp2f(s[mt][nt][0] - base0), p1 = exp2f(s[mt][nt][1] - base0);
                float p2 = exp2f(s[mt][nt][2] - base1), p3 = exp2f(s[mt][nt][3] - base1);
                l0[mt] += p0 + p1; l1[mt] += p2 + p3;
                pa[mt][nt / 2][(nt & 1) * 2] = packh2(p0, p1);
                pa[mt][nt / 2][(nt & 1) * 2 + 1] = packh2(p2, p3);
            }
        }
        #pragma unroll
        for (int j = 0; j < BN / 16; ++j) {
            #pragma unroll
            for (int dp = 0; dp < DP / 16; ++dp) {
                unsigned b0, b1, b2, b3;
                ldsm_x4_t(b0, b1, b2, b3, smem_u32(Vt + (j * 16 + (mi & 1) * 8 + rr) * FA_LD + dp * 16 + (mi >> 1) * 8));
                #pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma16816f(o[mt][2 * dp], pa[mt][j], b0, b1);
                    mma16816f(o[mt][2 * dp + 1], pa[mt][j], b2, b3);
                }
            }
        }
        __syncthreads();  // the next iteration's copy overwrites this stage
    }

    #pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        float s0 = l0[mt], s1 = l1[mt];
        s0 += __shfl_xor_sync(0xffffffffu, s0, 1);
        s0 += __shfl_xor_sync(0xffffffffu, s0, 2);
        s1 += __shfl_xor_sync(0xffffffffu, s1, 1);
        s1 += __shfl_xor_sync(0xffffffffu, s1, 2);
        const float inv0 = s0 > 0.0f ? 1.0f / s0 : 0.0f, inv1 = s1 > 0.0f ? 1.0f / s1 : 0.0f;
        #pragma unroll
        for (int dn = 0; dn < DP / 8; ++dn) {
            const int d = dn * 8 + t * 2;
            if (r0[mt] < Nq) *(unsigned *)(Ob + (i64)r0[mt] * rowStride + d) = packh2(o[mt][dn][0] * inv0, o[mt][dn][1] * inv0);
            if (r1[mt] < Nq) *(unsigned *)(Ob + (i64)r1[mt] * rowStride + d) = packh2(o[mt][dn][2] * inv1, o[mt][dn][3] * inv1);
        }
    }
}

// 16 rows per warp: 64 queries per block (4 warps) and 128 (8 warps; half the K/V traffic per query).
// 32 rows per warp (SSD_CUDA_ATTENTION_ROWS=32): 128 queries per block (4 warps) and 256 (8 warps).
#define FA_KERNEL(NAME, BOUND, WARPS, MT) \
extern "C" __global__ void __launch_bounds__(BOUND) NAME(const u16 *Q, const u16 *K, const u16 *V, u16 *O, \
                                                         int Nq, int Nk, int H, float scaleLog2, int causal) { \
    __shared__ __align__(128) u16 Ks[2][64 * FA_LD]; \
    __shared__ __align__(128) u16 Vs[2][64 * FA_LD]; \
    flash_attention_fast<WARPS, MT>(Q, K, V, O, Nq, Nk, H, scaleLog2, causal, Ks, Vs); \
}
FA_KERNEL(flash_attention_fast_d64, 128, 4, 1)
FA_KERNEL(flash_attention_fast_d64_w8, 256, 8, 1)
FA_KERNEL(flash_attention_fast_d64_m32, 128, 4, 2)
FA_KERNEL(flash_attention_fast_d64_m32_w8, 256, 8, 2)

"""#
}
