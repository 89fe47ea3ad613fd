/* AVX2 + FMA Winograd F(4×4, 3×3) transforms (see winograd.c): winograd_avx512.c on 8 channels per
 * vector, tails through vmaskmov. */
#if defined(__x86_64__) || defined(__i386__)
#include "internal.h"
#include <immintrin.h>

#define WT __attribute__((target("avx2,fma")))
#define WT_INLINE WT static inline __attribute__((always_inline))

static const int32_t wt_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
WT_INLINE __m256i wt_mask(long left) { return _mm256_loadu_si256((const __m256i *)(wt_table + 8 - (left >= 8 ? 8 : left))); }
/* Plain accesses for whole vectors, vmaskmov (slow on AMD) for the channel tail only. */
WT_INLINE __m256 ld(const float *p, __m256i mk, int full) { return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mk); }
WT_INLINE void st(float *p, __m256i mk, int full, __m256 v) {
    if (full) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, mk, v);
}

/* Bᵀ applied to six vectors. */
WT_INLINE void bt6(const __m256 *d, __m256 *o) {
    __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f);
    __m256 a = _mm256_fnmadd_ps(four, d[2], d[4]);             /* d4 − 4 d2 */
    __m256 b = _mm256_fnmadd_ps(four, d[1], d[3]);             /* d3 − 4 d1 */
    __m256 c = _mm256_sub_ps(d[4], d[2]);
    __m256 e = _mm256_add_ps(_mm256_sub_ps(d[3], d[1]), _mm256_sub_ps(d[3], d[1]));
    o[0] = _mm256_fmadd_ps(four, d[0], _mm256_fnmadd_ps(five, d[2], d[4]));
    o[1] = _mm256_add_ps(a, b);
    o[2] = _mm256_sub_ps(a, b);
    o[3] = _mm256_add_ps(c, e);
    o[4] = _mm256_sub_ps(c, e);
    o[5] = _mm256_fmadd_ps(four, d[1], _mm256_fnmadd_ps(five, d[3], d[5]));
}

/* G applied to three vectors. */
WT_INLINE void g3(const __m256 *g, __m256 *o) {
    __m256 s = _mm256_add_ps(g[0], g[2]);
    __m256 p = _mm256_fmadd_ps(g[0], _mm256_set1_ps(1.0f / 24), _mm256_mul_ps(g[2], _mm256_set1_ps(1.0f / 6)));
    __m256 q = _mm256_mul_ps(g[1], _mm256_set1_ps(1.0f / 12));
    __m256 m6 = _mm256_set1_ps(-1.0f / 6);
    o[0] = _mm256_mul_ps(g[0], _mm256_set1_ps(0.25f));
    o[1] = _mm256_mul_ps(_mm256_add_ps(s, g[1]), m6);
    o[2] = _mm256_mul_ps(_mm256_sub_ps(s, g[1]), m6);
    o[3] = _mm256_add_ps(p, q);
    o[4] = _mm256_sub_ps(p, q);
    o[5] = g[2];
}

/* Aᵀ applied to six vectors. */
WT_INLINE void at6(const __m256 *m, __m256 *o) {
    __m256 s12 = _mm256_add_ps(m[1], m[2]), d12 = _mm256_sub_ps(m[1], m[2]);
    __m256 s34 = _mm256_add_ps(m[3], m[4]), d34 = _mm256_sub_ps(m[3], m[4]);
    o[0] = _mm256_add_ps(_mm256_add_ps(m[0], s12), s34);
    o[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), d34, d12);
    o[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), s34, s12);
    o[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), d34, d12), m[5]);
}

WT void ssd_wino_input_f43_avx2(const float *src, long rs, long ch, long tiles, float *v, long vts, long vxs) {
    for (long t = 0; t < tiles; t++) {
        const float *s = src + 4 * t * ch;
        float *vt = v + t * vts;
        for (long c = 0; c < ch; c += 8) {
            __m256i mk = wt_mask(ch - c);
            int full = ch - c >= 8;
            __m256 tmp[6][6];
            _Pragma("clang loop unroll(full)")
            for (int j = 0; j < 6; j++) {
                __m256 d[6], o[6];
                _Pragma("clang loop unroll(full)")
                for (int r = 0; r < 6; r++) d[r] = ld(s + r * rs + j * ch + c, mk, full);
                bt6(d, o);
                _Pragma("clang loop unroll(full)")
                for (int i = 0; i < 6; i++) tmp[i][j] = o[i];
            }
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < 6; i++) {
                __m256 o[6];
                bt6(tmp[i], o);
                _Pragma("clang loop unroll(full)")
                for (int j = 0; j < 6; j++) st(vt + (i * 6 + j) * vxs + c, mk, full, o[j]);
            }
        }
    }
}

WT void ssd_wino_weight_f43_avx2(const float *g, long cin, float *u, long uxs) {
    for (long ci = 0; ci < cin; ci++) {
        for (int l = 0; l < SSD_NR; l += 8) {
            __m256 tmp[6][3];
            _Pragma("clang loop unroll(full)")
            for (int kx = 0; kx < 3; kx++) {
                __m256 col[3], o[6];
                _Pragma("clang loop unroll(full)")
                for (int ky = 0; ky < 3; ky++) col[ky] = _mm256_loadu_ps(g + ((ky * 3 + kx) * cin + ci) * SSD_NR + l);
                g3(col, o);
                _Pragma("clang loop unroll(full)")
                for (int i = 0; i < 6; i++) tmp[i][kx] = o[i];
            }
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < 6; i++) {
                __m256 o[6];
                g3(tmp[i], o);
                _Pragma("clang loop unroll(full)")
                for (int j = 0; j < 6; j++) _mm256_storeu_ps(u + (i * 6 + j) * uxs + ci * SSD_NR + l, o[j]);
            }
        }
    }
}

WT void ssd_wino_output_f43_avx2(const float *m, long mxs, long ch, const float *bias, const float *residual,
                                   float *y, long yrs, long yps, int rows, int cols) {
    for (long c = 0; c < ch; c += 8) {
        __m256i mk = wt_mask(ch - c);
        int full = ch - c >= 8;
        __m256 tmp[4][6];
        _Pragma("clang loop unroll(full)")
        for (int j = 0; j < 6; j++) {
            __m256 col[6], o[4];
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < 6; i++) col[i] = ld(m + (i * 6 + j) * mxs + c, mk, full);
            at6(col, o);
            _Pragma("clang loop unroll(full)")
            for (int a = 0; a < 4; a++) tmp[a][j] = o[a];
        }
        __m256 b = bias ? ld(bias + c, mk, full) : _mm256_setzero_ps();
        for (int a = 0; a < rows; a++) {
            __m256 o[4];
            at6(tmp[a], o);
            for (int x = 0; x < cols; x++) {
                __m256 val = _mm256_add_ps(o[x], b);
                long off = a * yrs + x * yps + c;
                if (residual) val = _mm256_add_ps(val, ld(residual + off, mk, full));
                st(y + off, mk, full, val);
            }
        }
    }
}
#endif
