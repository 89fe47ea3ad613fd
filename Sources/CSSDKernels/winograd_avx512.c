/* AVX-512 Winograd F(4×4, 3×3) transforms (see winograd.c): 16 channels per vector, masked tails. */
#if defined(__x86_64__) || defined(__i386__)
#include "internal.h"
#include <immintrin.h>

#define WT __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define WT_INLINE WT static inline __attribute__((always_inline))

static inline __mmask16 wt_mask(long left) { return (__mmask16)(left >= 16 ? 0xFFFF : ((1u << left) - 1)); }

/* Bᵀ applied to six vectors. */
WT_INLINE void bt6(const __m512 *d, __m512 *o) {
    __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f);
    __m512 a = _mm512_fnmadd_ps(four, d[2], d[4]);             /* d4 − 4 d2 */
    __m512 b = _mm512_fnmadd_ps(four, d[1], d[3]);             /* d3 − 4 d1 */
    __m512 c = _mm512_sub_ps(d[4], d[2]);
    __m512 e = _mm512_add_ps(_mm512_sub_ps(d[3], d[1]), _mm512_sub_ps(d[3], d[1]));
    o[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
    o[1] = _mm512_add_ps(a, b);
    o[2] = _mm512_sub_ps(a, b);
    o[3] = _mm512_add_ps(c, e);
    o[4] = _mm512_sub_ps(c, e);
    o[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

/* G applied to three vectors. */
WT_INLINE void g3(const __m512 *g, __m512 *o) {
    __m512 s = _mm512_add_ps(g[0], g[2]);
    __m512 p = _mm512_fmadd_ps(g[0], _mm512_set1_ps(1.0f / 24), _mm512_mul_ps(g[2], _mm512_set1_ps(1.0f / 6)));
    __m512 q = _mm512_mul_ps(g[1], _mm512_set1_ps(1.0f / 12));
    __m512 m6 = _mm512_set1_ps(-1.0f / 6);
    o[0] = _mm512_mul_ps(g[0], _mm512_set1_ps(0.25f));
    o[1] = _mm512_mul_ps(_mm512_add_ps(s, g[1]), m6);
    o[2] = _mm512_mul_ps(_mm512_sub_ps(s, g[1]), m6);
    o[3] = _mm512_add_ps(p, q);
    o[4] = _mm512_sub_ps(p, q);
    o[5] = g[2];
}

/* Aᵀ applied to six vectors. */
WT_INLINE void at6(const __m512 *m, __m512 *o) {
    __m512 s12 = _mm512_add_ps(m[1], m[2]), d12 = _mm512_sub_ps(m[1], m[2]);
    __m512 s34 = _mm512_add_ps(m[3], m[4]), d34 = _mm512_sub_ps(m[3], m[4]);
    o[0] = _mm512_add_ps(_mm512_add_ps(m[0], s12), s34);
    o[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d34, d12);
    o[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), s34, s12);
    o[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d34, d12), m[5]);
}

WT void ssd_wino_input_f43_avx512(const float *src, long rs, long ch, long tiles, float *v, long vts, long vxs) {
    for (long t = 0; t < tiles; t++) {
        const float *s = src + 4 * t * ch;
        float *vt = v + t * vts;
        for (long c = 0; c < ch; c += 16) {
            __mmask16 mk = wt_mask(ch - c);
            __m512 tmp[6][6];
            _Pragma("clang loop unroll(full)")
            for (int j = 0; j < 6; j++) {
                __m512 d[6], o[6];
                _Pragma("clang loop unroll(full)")
                for (int r = 0; r < 6; r++) d[r] = _mm512_maskz_loadu_ps(mk, s + r * rs + j * ch + c);
                bt6(d, o);
                _Pragma("clang loop unroll(full)")
                for (int i = 0; i < 6; i++) tmp[i][j] = o[i];
            }
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < 6; i++) {
                __m512 o[6];
                bt6(tmp[i], o);
                _Pragma("clang loop unroll(full)")
                for (int j = 0; j < 6; j++) _mm512_mask_storeu_ps(vt + (i * 6 + j) * vxs + c, mk, o[j]);
            }
        }
    }
}

WT void ssd_wino_weight_f43_avx512(const float *g, long cin, float *u, long uxs) {
    for (long ci = 0; ci < cin; ci++) {
        for (int l = 0; l < SSD_NR; l += 16) {
            __m512 tmp[6][3];
            _Pragma("clang loop unroll(full)")
            for (int kx = 0; kx < 3; kx++) {
                __m512 col[3], o[6];
                _Pragma("clang loop unroll(full)")
                for (int ky = 0; ky < 3; ky++) col[ky] = _mm512_loadu_ps(g + ((ky * 3 + kx) * cin + ci) * SSD_NR + l);
                g3(col, o);
                _Pragma("clang loop unroll(full)")
                for (int i = 0; i < 6; i++) tmp[i][kx] = o[i];
            }
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < 6; i++) {
                __m512 o[6];
                g3(tmp[i], o);
                _Pragma("clang loop unroll(full)")
                for (int j = 0; j < 6; j++) _mm512_storeu_ps(u + (i * 6 + j) * uxs + ci * SSD_NR + l, o[j]);
            }
        }
    }
}

WT void ssd_wino_output_f43_avx512(const float *m, long mxs, long ch, const float *bias, const float *residual,
                                   float *y, long yrs, long yps, int rows, int cols) {
    for (long c = 0; c < ch; c += 16) {
        __mmask16 mk = wt_mask(ch - c);
        __m512 tmp[4][6];
        _Pragma("clang loop unroll(full)")
        for (int j = 0; j < 6; j++) {
            __m512 col[6], o[4];
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < 6; i++) col[i] = _mm512_maskz_loadu_ps(mk, m + (i * 6 + j) * mxs + c);
            at6(col, o);
            _Pragma("clang loop unroll(full)")
            for (int a = 0; a < 4; a++) tmp[a][j] = o[a];
        }
        __m512 b = bias ? _mm512_maskz_loadu_ps(mk, bias + c) : _mm512_setzero_ps();
        for (int a = 0; a < rows; a++) {
            __m512 o[4];
            at6(tmp[a], o);
            for (int x = 0; x < cols; x++) {
                __m512 val = _mm512_add_ps(o[x], b);
                long off = a * yrs + x * yps + c;
                if (residual) val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(mk, residual + off));
                _mm512_mask_storeu_ps(y + off, mk, val);
            }
        }
    }
}
#endif
