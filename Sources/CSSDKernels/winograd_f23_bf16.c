/* Winograd F(2×2, 3×3) transforms for the bf16 (AMX) convolutions: the input tiles straight into
 * bf16 rows for the tile GEMMs, the output from their fp32 products. F(2×2, 3×3) rather than the
 * fp32 path's F(4×4, 3×3): with bf16 operands the larger transform's error (≈ 2.5e-2 relative on a
 * 320-channel model) exceeds the bf16 tolerance, this one's (≈ 4e-3) stays near the direct bf16
 * convolution's (≈ 2e-3).
 *
 *   Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A   for a 4×4 input tile d and a 3×3 filter g;
 *   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1], G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
 *   Aᵀ = [1 1 1 0; 0 1 −1 −1]; position ξ = 4·i + j of the 4×4 transformed domain.
 * Channels are innermost, 16 per vector (callers use multiples of 16). AVX512_BF16 only: the path
 * runs where the AMX GEMM does. The `bf16x2`/`split` variants serve fp32 matmul precision "high"
 * (bf16×3 GEMMs, see ssd_bf16x3gemm_bf16a), where F(2×2) errs ~1e-5. */
#include "internal.h"
#include "split_avx512.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define W23 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16")))

/* Bᵀ d B of the 4 × 4 input tile at s (rows rs floats apart, pixels ch apart), 16 channels from c:
 * position ξ = 4i + j in o[ξ]. */
W23 static inline void input_tile(const float *s, long rs, long ch, long c, __m512 *o) {
    __m512 d[4][4], e[4][4];
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 4; j++) d[r][j] = _mm512_loadu_ps(s + r * rs + j * ch + c);
    for (int j = 0; j < 4; j++) {  /* Bᵀ · d, column j */
        e[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
        e[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
        e[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
        e[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
    }
    for (int i = 0; i < 4; i++) {  /* (Bᵀ d) · B, row i */
        o[4 * i + 0] = _mm512_sub_ps(e[i][0], e[i][2]);
        o[4 * i + 1] = _mm512_add_ps(e[i][1], e[i][2]);
        o[4 * i + 2] = _mm512_sub_ps(e[i][2], e[i][1]);
        o[4 * i + 3] = _mm512_sub_ps(e[i][1], e[i][3]);
    }
}

W23 void ssd_wino23_input_bf16(const float *src, long rs, long ch, long tiles, uint16_t *v, long vts, long vxs) {
    for (long t = 0; t < tiles; t++) {
        uint16_t *vt = v + t * vts;
        for (long c = 0; c < ch; c += 16) {
            __m512 o[16];
            input_tile(src + 2 * t * ch, rs, ch, c, o);
            for (int x = 0; x < 16; x++) _mm256_storeu_si256((__m256i *)(vt + x * vxs + c), (__m256i)_mm512_cvtneps_pbh(o[x]));
        }
    }
}

W23 void ssd_wino23_input_bf16x2(const float *src, long rs, long ch, long tiles, uint16_t *v, long vts, long vxs) {
    for (long t = 0; t < tiles; t++) {
        uint16_t *vt = v + t * vts;
        for (long c = 0; c < ch; c += 16) {
            __m512 o[16];
            long at = (c / 32) * 64 + c % 32;  /* high part; the low part 32 further */
            input_tile(src + 2 * t * ch, rs, ch, c, o);
            for (int x = 0; x < 16; x++) {
                __m256i hi, lo;
                ssd_split16(o[x], &hi, &lo);
                _mm256_storeu_si256((__m256i *)(vt + x * vxs + at), hi);
                _mm256_storeu_si256((__m256i *)(vt + x * vxs + at + 32), lo);
            }
        }
    }
}

/* G applied to three vectors: (g0, (g0+g1+g2)/2, (g0−g1+g2)/2, g2). */
W23 static inline void g23(__m512 g0, __m512 g1, __m512 g2, __m512 *o) {
    __m512 half = _mm512_set1_ps(0.5f), s = _mm512_add_ps(g0, g2);
    o[0] = g0;
    o[1] = _mm512_mul_ps(_mm512_add_ps(s, g1), half);
    o[2] = _mm512_mul_ps(_mm512_sub_ps(s, g1), half);
    o[3] = g2;
}

W23 void ssd_wino23_weight(const float *g, long cin, long ci0, long ci1, int split, uint16_t *u, long uxs) {
    for (long ci = ci0; ci < ci1; ci += 2) {
        long d = split ? (ci / 32) * 64 + ci % 32 : ci;  /* stored depth of the (high) pair */
        for (int l = 0; l < SSD_NR; l += 16) {
            __m512 out[2][16];
            for (int h = 0; h < 2; h++) {
                const float *gc = g + (ci + h) * SSD_NR + l;
                __m512 t[4][3];
                for (int kx = 0; kx < 3; kx++) {  /* G · g, column kx */
                    __m512 o[4];
                    g23(_mm512_loadu_ps(gc + (0 * 3 + kx) * cin * SSD_NR), _mm512_loadu_ps(gc + (1 * 3 + kx) * cin * SSD_NR),
                        _mm512_loadu_ps(gc + (2 * 3 + kx) * cin * SSD_NR), o);
                    for (int i = 0; i < 4; i++) t[i][kx] = o[i];
                }
                for (int i = 0; i < 4; i++) g23(t[i][0], t[i][1], t[i][2], &out[h][4 * i]);  /* row i · Gᵀ */
            }
            for (int x = 0; x < 16; x++) {
                uint16_t *base = u + x * uxs + l * 2;
                ssd_store_split_pairs(out[0][x], out[1][x], base + (d / 2) * 2 * SSD_NR,
                                      split ? base + ((d + 32) / 2) * 2 * SSD_NR : NULL);
            }
        }
    }
}

W23 void ssd_wino23_output(const float *m, long mxs, long ch, const float *bias, const float *residual, float *y,
                           long ys, long cs, int rows, int cols) {
    for (long c = 0; c < ch; c += 16) {
        __m512 mm[4][4], e[2][4];
        for (int x = 0; x < 16; x++) mm[x / 4][x % 4] = _mm512_loadu_ps(m + x * mxs + c);
        for (int j = 0; j < 4; j++) {  /* Aᵀ · M, column j */
            e[0][j] = _mm512_add_ps(_mm512_add_ps(mm[0][j], mm[1][j]), mm[2][j]);
            e[1][j] = _mm512_sub_ps(_mm512_sub_ps(mm[1][j], mm[2][j]), mm[3][j]);
        }
        __m512 vb = bias ? _mm512_loadu_ps(bias + c) : _mm512_setzero_ps();
        for (int i = 0; i < rows; i++) {
            __m512 out[2];
            out[0] = _mm512_add_ps(_mm512_add_ps(e[i][0], e[i][1]), e[i][2]);
            out[1] = _mm512_sub_ps(_mm512_sub_ps(e[i][1], e[i][2]), e[i][3]);
            for (int j = 0; j < cols; j++) {
                __m512 o = _mm512_add_ps(out[j], vb);
                long at = i * ys + j * cs + c;
                if (residual) o = _mm512_add_ps(o, _mm512_loadu_ps(residual + at));
                _mm512_storeu_ps(y + at, o);
            }
        }
    }
}
#else
/* The bf16 Winograd path runs only with AMX (x86-64); these are never called elsewhere. */
void ssd_wino23_input_bf16x2(const float *src, long rs, long ch, long tiles, uint16_t *v, long vts, long vxs) {
    (void)src; (void)rs; (void)ch; (void)tiles; (void)v; (void)vts; (void)vxs;
}
void ssd_wino23_weight(const float *g, long cin, long ci0, long ci1, int split, uint16_t *u, long uxs) {
    (void)g; (void)cin; (void)ci0; (void)ci1; (void)split; (void)u; (void)uxs;
}
void ssd_wino23_input_bf16(const float *src, long rs, long ch, long tiles, uint16_t *v, long vts, long vxs) {
    (void)src; (void)rs; (void)ch; (void)tiles; (void)v; (void)vts; (void)vxs;
}
void ssd_wino23_output(const float *m, long mxs, long ch, const float *bias, const float *residual, float *y,
                       long ys, long cs, int rows, int cols) {
    (void)m; (void)mxs; (void)ch; (void)bias; (void)residual; (void)y; (void)ys; (void)cs; (void)rows; (void)cols;
}
#endif
