/* AVX-512 math kernels: vector exp (Cephes polynomial, scalef) and erf (Abramowitz–Stegun
 * 7.1.26, |error| < 1.5e-7), with masked tails. */
#if defined(__x86_64__) || defined(__i386__)
#include "internal.h"
#include <immintrin.h>
#include <math.h>

#define SSD_T __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))

SSD_T static inline __m512 v_exp(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7228f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, n);
}

SSD_T static inline __m512 v_erf(__m512 x) {
    __m512 ax = _mm512_abs_ps(x);
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(ax, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    __m512 e = v_exp(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), ax), ax));
    __m512 y = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.0f));
    /* copy the sign of x */
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign));
}

SSD_T static inline __m512 v_act(__m512 v, int kind) {
    __m512 one = _mm512_set1_ps(1.0f);
    switch (kind) {
    case SSD_ACT_SILU:
        return _mm512_div_ps(v, _mm512_add_ps(one, v_exp(_mm512_sub_ps(_mm512_setzero_ps(), v))));
    case SSD_ACT_GELU:
        return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v),
                             _mm512_add_ps(one, v_erf(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f)))));
    case SSD_ACT_QUICK_GELU:
        return _mm512_div_ps(v, _mm512_add_ps(one, v_exp(_mm512_mul_ps(v, _mm512_set1_ps(-1.702f)))));
    case SSD_ACT_RELU:
        return _mm512_max_ps(_mm512_setzero_ps(), v); /* a NaN in v is returned (the second operand) */
    case SSD_ACT_TANH: {
        /* |x| ≥ 0.625: tanh|x| = (1 − e) / (1 + e), e = exp(−2|x|); below, Cephes tanhf's odd polynomial
           (no cancellation near 0); the sign of x copied; NaN passed through (v_exp would clamp it). */
        __m512 ax = _mm512_abs_ps(v);
        __m512 e = v_exp(_mm512_mul_ps(ax, _mm512_set1_ps(-2.0f)));
        __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
        __m512 z = _mm512_mul_ps(ax, ax);
        __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(-5.70498872745e-3f), z, _mm512_set1_ps(2.06390887954e-2f));
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
        __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), ax, ax);
        t = _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ), small);
        __m512i sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u));
        t = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
        return _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
    }
    default:
        return v;
    }
}

static inline __mmask16 tail_mask(long left) { return (__mmask16)(left >= 16 ? 0xFFFF : ((1u << left) - 1)); }

SSD_T static void a_activation(const float *x, float *y, long n, int kind) {
    for (long i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, mk, v_act(_mm512_maskz_loadu_ps(mk, x + i), kind));
    }
}

SSD_T static void a_geglu(const float *x, float *y, long rows, long n) {
    for (long r = 0; r < rows; r++) {
        const float *h = x + r * 2 * n, *g = h + n;
        float *yr = y + r * n;
        for (long i = 0; i < n; i += 16) {
            __mmask16 mk = tail_mask(n - i);
            __m512 gv = v_act(_mm512_maskz_loadu_ps(mk, g + i), SSD_ACT_GELU);
            _mm512_mask_storeu_ps(yr + i, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, h + i), gv));
        }
    }
}

SSD_T static void a_scale_shift_act(const float *x, float *y, long rows, long ch, const float *scale,
                                    const float *shift, int act) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ch;
        float *yr = y + r * ch;
        for (long c = 0; c < ch; c += 16) {
            __mmask16 mk = tail_mask(ch - c);
            __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, xr + c), _mm512_maskz_loadu_ps(mk, scale + c),
                                       _mm512_maskz_loadu_ps(mk, shift + c));
            _mm512_mask_storeu_ps(yr + c, mk, v_act(v, act));
        }
    }
}

/* exp(row − mx) in place over `valid` entries; returns their sum. */
SSD_T static float exp_sub_sum(const float *x, float *y, long valid, float mx) {
    __m512 vm = _mm512_set1_ps(mx), acc = _mm512_setzero_ps();
    for (long i = 0; i < valid; i += 16) {
        __mmask16 mk = tail_mask(valid - i);
        __m512 e = v_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm));
        e = _mm512_maskz_mov_ps(mk, e);
        _mm512_mask_storeu_ps(y + i, mk, e);
        acc = _mm512_add_ps(acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}

SSD_T static float row_max(const float *x, long valid, float init) {
    __m512 acc = _mm512_set1_ps(init);
    for (long i = 0; i < valid; i += 16) {
        __mmask16 mk = tail_mask(valid - i);
        acc = _mm512_mask_max_ps(acc, mk, acc, _mm512_maskz_loadu_ps(mk, x + i));
    }
    return _mm512_reduce_max_ps(acc);
}

SSD_T static void a_softmax_row(const float *x, float *y, long n, long valid) {
    float mx = row_max(x, valid, -INFINITY);
    float sum = exp_sub_sum(x, y, valid, mx);
    __m512 inv = _mm512_set1_ps(1.0f / sum);
    for (long i = 0; i < valid; i += 16) {
        __mmask16 mk = tail_mask(valid - i);
        _mm512_mask_storeu_ps(y + i, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, y + i), inv));
    }
    for (long i = valid; i < n; i++) y[i] = 0;
}

/* row[0..<d] *= c (the online softmax's correction of an output row). */
SSD_T static void rescale_row(float *row, long d, float c) {
    __m512 vc = _mm512_set1_ps(c);
    for (long j = 0; j < d; j += 16) {
        __mmask16 mk = tail_mask(d - j);
        _mm512_mask_storeu_ps(row + j, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, row + j), vc));
    }
}

SSD_T static void a_online_softmax(float *s, long rows, long cols, long cols_padded, long ldS, float *m, float *l,
                                   float *o, long ldo, long d, int causal, long q0, long k0) {
    for (long i = 0; i < rows; i++) {
        float *row = s + i * ldS;
        long valid = ssd_causal_valid(i, cols, causal, q0, k0);
        for (long j = valid; j < cols_padded; j++) row[j] = 0;
        if (valid == 0) continue;
        float mx = row_max(row, valid, m[i]);
        float sum = exp_sub_sum(row, row, valid, mx);
        float corr = (m[i] == -INFINITY) ? 0.0f : expf(m[i] - mx);
        l[i] = l[i] * corr + sum;
        m[i] = mx;
        if (corr != 1.0f) rescale_row(o + i * ldo, d, corr);
    }
}

static inline __mmask16 lanes_left(long left) {
    return (__mmask16)(left >= 16 ? 0xFFFF : left <= 0 ? 0 : ((1u << left) - 1));
}

/* Rounds to bf16 (RNE; finite inputs) keeping the fp32 bit layout (low half zero). */
SSD_T static inline __m512i round_bf16_bits(__m512 v) {
    __m512i x = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    return _mm512_and_si512(_mm512_add_epi32(x, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))),
                            _mm512_set1_epi32((int)0xFFFF0000u));
}

/* exp for x ≤ 0 whose result is rounded to bf16 next: degree-4 Taylor on |r| ≤ ln2/2 (relative
 * error < 5e-5, far below bf16's 2e-3 rounding), one-constant reduction. */
SSD_T static inline __m512 v_exp_bf16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147180559945f), x);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 24), r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Keys row i of a bf16 softmax block keeps (a causal mask drops those past its query); a row that
 * keeps none gets zero probabilities. */
static inline long bf16_row_keys(long i, long cols, long cols_padded, int causal, long q0, long k0, uint16_t *prow) {
    long valid = ssd_causal_valid(i, cols, causal, q0, k0);
    if (valid == 0)
        for (long j = 0; j < cols_padded; j++) prow[j] = 0;
    return valid;
}

/* Online softmax on raw scores times `scale`, the probabilities written as bf16 (the row sums
 * add the rounded values, so that l normalises exactly what multiplies V); s is only read. */
SSD_T static void a_online_softmax_bf16(float *s, long rows, long cols, long cols_padded, long ldS, float scale,
                                        float *m, float *l, float *o, long ldo, long d, int causal, long q0, long k0,
                                        uint16_t *p, long ldp) {
    __m512 vscale = _mm512_set1_ps(scale);
    for (long i = 0; i < rows; i++) {
        const float *row = s + i * ldS;
        uint16_t *prow = p + i * ldp;
        long valid = bf16_row_keys(i, cols, cols_padded, causal, q0, k0, prow);
        if (valid == 0) continue;
        __m512 vmax = _mm512_set1_ps(m[i]);
        for (long j = 0; j < valid; j += 16) {
            __mmask16 mk = lanes_left(valid - j);
            vmax = _mm512_mask_max_ps(vmax, mk, vmax, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, row + j), vscale));
        }
        float mx = _mm512_reduce_max_ps(vmax);
        __m512 vm = _mm512_set1_ps(mx), acc = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        long j = 0;
        for (; j + 32 <= valid; j += 32) {  /* two independent chains per step */
            __m512 e0 = v_exp_bf16(_mm512_fmsub_ps(_mm512_loadu_ps(row + j), vscale, vm));
            __m512 e1 = v_exp_bf16(_mm512_fmsub_ps(_mm512_loadu_ps(row + j + 16), vscale, vm));
            __m512i r0 = round_bf16_bits(e0), r1 = round_bf16_bits(e1);
            acc = _mm512_add_ps(acc, _mm512_castsi512_ps(r0));
            acc1 = _mm512_add_ps(acc1, _mm512_castsi512_ps(r1));
            __m512i packed = _mm512_permutexvar_epi64(_mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0),
                                                      _mm512_packus_epi32(_mm512_srli_epi32(r0, 16), _mm512_srli_epi32(r1, 16)));
            _mm512_storeu_si512(prow + j, packed);
        }
        for (; j < cols_padded; j += 16) {
            __mmask16 mk = lanes_left(valid - j);
            __m512 e = v_exp_bf16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(mk, row + j), vscale, vm));
            __m512i r = round_bf16_bits(_mm512_maskz_mov_ps(mk, e));
            acc = _mm512_add_ps(acc, _mm512_castsi512_ps(r));
            _mm256_mask_storeu_epi16(prow + j, lanes_left(cols_padded - j), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
        }
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc, acc1));
        float corr = (m[i] == -INFINITY) ? 0.0f : expf(m[i] - mx);
        l[i] = l[i] * corr + sum;
        m[i] = mx;
        if (corr != 1.0f) rescale_row(o + i * ldo, d, corr);
    }
}

/* The online softmax of `a_online_softmax_bf16` with AVX512_BF16 (`ssd_online_softmax_bf16` picks
 * it at that level): with scale > 0 the row maximum is taken on the raw scores (rounding is
 * monotonic, so max(s)·scale is the maximum of the scaled scores), and each 32 probabilities are
 * rounded by one `vcvtne2ps2bf16` and summed by one `vdpbf16ps` against ones (exact products,
 * fp32 sums), about half the instructions per score (the softmax took a third of bf16 attention's
 * time in `perf`, as much as its GEMMs; it still does, so more than instructions bound it). */
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,fma")))
void ssd_online_softmax_bf16_native(float *s, long rows, long cols, long cols_padded, long ldS, float scale, float *m,
                                    float *l, float *o, long ldo, long d, int causal, long q0, long k0, uint16_t *p,
                                    long ldp) {
    __m512 vscale = _mm512_set1_ps(scale);
    const __m512bh ones = (__m512bh)_mm512_set1_epi16(0x3F80);
    for (long i = 0; i < rows; i++) {
        const float *row = s + i * ldS;
        uint16_t *prow = p + i * ldp;
        long valid = bf16_row_keys(i, cols, cols_padded, causal, q0, k0, prow);
        if (valid == 0) continue;
        float mx;
        if (scale > 0) {
            __m512 vmax = _mm512_set1_ps(-INFINITY);
            for (long j = 0; j < valid; j += 16) {
                __mmask16 mk = lanes_left(valid - j);
                vmax = _mm512_mask_max_ps(vmax, mk, vmax, _mm512_maskz_loadu_ps(mk, row + j));
            }
            mx = _mm512_reduce_max_ps(vmax) * scale;
            if (m[i] > mx) mx = m[i];
        } else {
            __m512 vmax = _mm512_set1_ps(m[i]);
            for (long j = 0; j < valid; j += 16) {
                __mmask16 mk = lanes_left(valid - j);
                vmax = _mm512_mask_max_ps(vmax, mk, vmax, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, row + j), vscale));
            }
            mx = _mm512_reduce_max_ps(vmax);
        }
        __m512 vm = _mm512_set1_ps(mx), acc = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        long j = 0;
        for (; j + 64 <= valid; j += 64) {  /* two independent chains per step */
            __m512 e0 = v_exp_bf16(_mm512_fmsub_ps(_mm512_loadu_ps(row + j), vscale, vm));
            __m512 e1 = v_exp_bf16(_mm512_fmsub_ps(_mm512_loadu_ps(row + j + 16), vscale, vm));
            __m512 e2 = v_exp_bf16(_mm512_fmsub_ps(_mm512_loadu_ps(row + j + 32), vscale, vm));
            __m512 e3 = v_exp_bf16(_mm512_fmsub_ps(_mm512_loadu_ps(row + j + 48), vscale, vm));
            __m512bh p0 = _mm512_cvtne2ps_pbh(e1, e0), p1 = _mm512_cvtne2ps_pbh(e3, e2);
            acc = _mm512_dpbf16_ps(acc, p0, ones);
            acc1 = _mm512_dpbf16_ps(acc1, p1, ones);
            _mm512_storeu_si512(prow + j, (__m512i)p0);
            _mm512_storeu_si512(prow + j + 32, (__m512i)p1);
        }
        for (; j < cols_padded; j += 32) {  /* the rest, zeros from `valid` to cols_padded */
            __mmask16 lo = lanes_left(valid - j), hi = lanes_left(valid - j - 16);
            __m512 e0 = _mm512_maskz_mov_ps(lo, v_exp_bf16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(lo, row + j), vscale, vm)));
            __m512 e1 = _mm512_maskz_mov_ps(hi, v_exp_bf16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(hi, row + j + 16), vscale, vm)));
            __m512bh pv = _mm512_cvtne2ps_pbh(e1, e0);
            acc = _mm512_dpbf16_ps(acc, pv, ones);
            long left = cols_padded - j;
            _mm512_mask_storeu_epi16(prow + j, left >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << left) - 1), (__m512i)pv);
        }
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc, acc1));
        float corr = (m[i] == -INFINITY) ? 0.0f : expf(m[i] - mx);
        l[i] = l[i] * corr + sum;
        m[i] = mx;
        if (corr != 1.0f) rescale_row(o + i * ldo, d, corr);
    }
}

/* Layer norm of one row, the two sums in double like the portable version (8 double lanes,
 * two accumulators each), so that the result does not depend on the level. */
SSD_T static void a_layer_norm_row(const float *x, float *y, long n, const float *gamma, const float *beta, float eps) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (long i = 0; i < n; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(lanes_left(n - i), x + i);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    float mean = (float)(_mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / (double)n);
    __m512 vmean = _mm512_set1_ps(mean);
    __m512d q0 = _mm512_setzero_pd(), q1 = _mm512_setzero_pd();
    for (long i = 0; i < n; i += 16) {
        __mmask16 mk = lanes_left(n - i);
        __m512 dv = _mm512_maskz_sub_ps(mk, _mm512_maskz_loadu_ps(mk, x + i), vmean);
        __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(dv));
        __m512d d1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(dv), 1)));
        q0 = _mm512_fmadd_pd(d0, d0, q0);
        q1 = _mm512_fmadd_pd(d1, d1, q1);
    }
    float rstd = (float)(1.0 / sqrt(_mm512_reduce_add_pd(_mm512_add_pd(q0, q1)) / (double)n + (double)eps));
    __m512 vr = _mm512_set1_ps(rstd);
    for (long i = 0; i < n; i += 16) {
        __mmask16 mk = lanes_left(n - i);
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vmean), vr),
                                 _mm512_maskz_loadu_ps(mk, gamma + i));
        _mm512_mask_storeu_ps(y + i, mk, _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, beta + i)));
    }
}

/* GEGLU rows straight to bf16: row r of dst = bf16(h · GELU(g)) with h, g the halves of x's row r
 * (2n wide), zeros from n to `padded` — the same values as a_geglu then ssd_rows_to_bf16_avx512. */
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,fma")))
void ssd_geglu_to_bf16_avx512(const float *x, long rows, long n, long padded, uint16_t *dst, long ld) {
    for (long r = 0; r < rows; r++) {
        const float *h = x + r * 2 * n, *g = h + n;
        uint16_t *d = dst + r * ld;
        for (long p = 0; p < padded; p += 32) {
            __mmask16 m0 = lanes_left(n - p), m1 = lanes_left(n - p - 16);
            __m512 lo = _mm512_mul_ps(_mm512_maskz_loadu_ps(m0, h + p), v_act(_mm512_maskz_loadu_ps(m0, g + p), SSD_ACT_GELU));
            __m512 hi = _mm512_mul_ps(_mm512_maskz_loadu_ps(m1, h + p + 16), v_act(_mm512_maskz_loadu_ps(m1, g + p + 16), SSD_ACT_GELU));
            __m512i v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_mov_ps(m1, hi), _mm512_maskz_mov_ps(m0, lo));
            long cnt = padded - p;
            if (cnt >= 32) _mm512_storeu_si512(d + p, v);
            else _mm512_mask_storeu_epi16(d + p, (__mmask32)((1u << cnt) - 1), v);
        }
    }
}

const ssd_math_table ssd_math_avx512 = {
    a_activation, a_geglu, a_scale_shift_act, a_softmax_row, a_online_softmax, a_online_softmax_bf16, a_layer_norm_row,
};
#endif
