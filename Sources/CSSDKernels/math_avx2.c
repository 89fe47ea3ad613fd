/* AVX2 + FMA math kernels: the AVX-512 ones (math_avx512.c) on 8-lane vectors, with tails
 * through vmaskmov. Same polynomials (Cephes exp, Abramowitz–Stegun erf, Cephes tanhf), so the
 * levels agree to a few ulps; 2^n is applied in two halves, as scalef would, so that results in
 * the subnormal range and n = 128 stay right. */
#if defined(__x86_64__) || defined(__i386__)
#include "internal.h"
#include <immintrin.h>
#include <math.h>

#define SSD_T __attribute__((target("avx2,fma")))

/* Lane mask for the first `left` lanes (all eight from 8 on, none at 0 or below). */
static const int32_t mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
SSD_T static inline __m256i lanes(long left) {
    long k = left >= 8 ? 8 : left <= 0 ? 0 : left;
    return _mm256_loadu_si256((const __m256i *)(mask_table + 8 - k));
}
/* `left` ≥ 8: a plain 8-lane access; fewer: the first `left` lanes (vmaskmov, slow on AMD: tails only). */
SSD_T static inline __m256 load(const float *p, long left) {
    return left >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes(left));
}
SSD_T static inline void store(float *p, long left, __m256 v) {
    if (left >= 8) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, lanes(left), v);
}

SSD_T static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
SSD_T static inline float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
SSD_T static inline double hsum_pd(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* y · 2^n for integral n in [−151, 128]: two factors 2^(n/2), each a normal float. */
SSD_T static inline __m256 scale2(__m256 y, __m256 n) {
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, f1), f2);
}

/* exp(x) / 2^n for n = round(x·log2 e): Cody–Waite reduction, then the Cephes polynomial. */
SSD_T static inline __m256 exp_reduced(__m256 x, __m256 n) {
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    return y;
}

SSD_T static inline __m256 v_exp(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.7228f)), _mm256_set1_ps(-104.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 y = exp_reduced(x, n);
    return scale2(y, n);
}

SSD_T static inline __m256 v_abs(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
SSD_T static inline __m256 v_copysign(__m256 magnitude, __m256 sign_of) {
    return _mm256_or_ps(magnitude, _mm256_and_ps(sign_of, _mm256_set1_ps(-0.0f)));
}

SSD_T static inline __m256 v_erf(__m256 x) {
    __m256 ax = v_abs(x);
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(ax, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 e = v_exp(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), ax), ax));
    return v_copysign(_mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f)), x);
}

SSD_T static inline __m256 v_act(__m256 v, int kind) {
    __m256 one = _mm256_set1_ps(1.0f);
    switch (kind) {
    case SSD_ACT_SILU:
        return _mm256_div_ps(v, _mm256_add_ps(one, v_exp(_mm256_sub_ps(_mm256_setzero_ps(), v))));
    case SSD_ACT_GELU:
        return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v),
                             _mm256_add_ps(one, v_erf(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f)))));
    case SSD_ACT_QUICK_GELU:
        return _mm256_div_ps(v, _mm256_add_ps(one, v_exp(_mm256_mul_ps(v, _mm256_set1_ps(-1.702f)))));
    case SSD_ACT_RELU:
        return _mm256_max_ps(_mm256_setzero_ps(), v); /* a NaN in v is returned (the second operand) */
    case SSD_ACT_TANH: {
        /* As math_avx512.c: (1 − e) / (1 + e) with e = exp(−2|x|) from |x| ≥ 0.625, Cephes tanhf's odd
           polynomial below; the sign of x copied; NaN passed through. */
        __m256 ax = v_abs(v);
        __m256 e = v_exp(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
        __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
        __m256 z = _mm256_mul_ps(ax, ax);
        __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(-5.70498872745e-3f), z, _mm256_set1_ps(2.06390887954e-2f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
        __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), ax, ax);
        t = _mm256_blendv_ps(t, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
        t = v_copysign(t, v);
        return _mm256_blendv_ps(t, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    default:
        return v;
    }
}

SSD_T static void a_activation(const float *x, float *y, long n, int kind) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, v_act(_mm256_loadu_ps(x + i), kind));
    if (i < n) store(y + i, n - i, v_act(load(x + i, n - i), kind));
}

SSD_T static void a_geglu(const float *x, float *y, long rows, long n) {
    for (long r = 0; r < rows; r++) {
        const float *h = x + r * 2 * n, *g = h + n;
        float *yr = y + r * n;
        for (long i = 0; i < n; i += 8) {
            __m256 gv = v_act(load(g + i, n - i), SSD_ACT_GELU);
            store(yr + i, n - i, _mm256_mul_ps(load(h + i, n - i), gv));
        }
    }
}

SSD_T static void a_scale_shift_act(const float *x, float *y, long rows, long ch, const float *scale,
                                    const float *shift, int act) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ch;
        float *yr = y + r * ch;
        long c = 0;
        for (; c + 8 <= ch; c += 8) {
            __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(xr + c), _mm256_loadu_ps(scale + c), _mm256_loadu_ps(shift + c));
            _mm256_storeu_ps(yr + c, v_act(v, act));
        }
        if (c < ch) {
            long left = ch - c;
            __m256 v = _mm256_fmadd_ps(load(xr + c, left), load(scale + c, left), load(shift + c, left));
            store(yr + c, left, v_act(v, act));
        }
    }
}

/* exp(row − mx) over `valid` entries (into y); returns their sum. */
SSD_T static float exp_sub_sum(const float *x, float *y, long valid, float mx) {
    __m256 vm = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    for (long i = 0; i < valid; i += 8) {
        __m256 e = _mm256_and_ps(v_exp(_mm256_sub_ps(load(x + i, valid - i), vm)), _mm256_castsi256_ps(lanes(valid - i)));
        store(y + i, valid - i, e);
        acc = _mm256_add_ps(acc, e);
    }
    return hsum(acc);
}

SSD_T static float row_max(const float *x, long valid, float init) {
    __m256 acc = _mm256_set1_ps(init);
    for (long i = 0; i < valid; i += 8) {
        acc = _mm256_blendv_ps(acc, _mm256_max_ps(acc, load(x + i, valid - i)), _mm256_castsi256_ps(lanes(valid - i)));
    }
    return hmax(acc);
}

SSD_T static void a_softmax_row(const float *x, float *y, long n, long valid) {
    float mx = row_max(x, valid, -INFINITY);
    float sum = exp_sub_sum(x, y, valid, mx);
    __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (long i = 0; i < valid; i += 8) {
        store(y + i, valid - i, _mm256_mul_ps(load(y + i, valid - i), inv));
    }
    for (long i = valid; i < n; i++) y[i] = 0;
}

/* row[0..<d] *= c (the online softmax's correction of an output row). */
SSD_T static void rescale_row(float *row, long d, float c) {
    __m256 vc = _mm256_set1_ps(c);
    for (long j = 0; j < d; j += 8) {
        store(row + j, d - j, _mm256_mul_ps(load(row + j, d - j), vc));
    }
}

/* exp(x) for x ≤ 0 (a score minus its row's maximum), the softmax's hot loop: the Cephes
 * polynomial of v_exp, but n = round(x·log2 e) by the 1.5·2²³ shifter (its low bits are n) and
 * 2^n added straight into the exponent field. x is clamped at −86.5 (n ≥ −125, so the exponent
 * stays normal): below that, where exp(x) < 3e-38, the result is ~3e-38 instead of a subnormal
 * or zero, which no sum that includes the row's maximum (exp 0 = 1) can tell apart. NaN stays NaN. */
SSD_T static inline __m256 v_exp_nonpos(__m256 x) {
    const __m256 shifter = _mm256_set1_ps(12582912.0f);
    x = _mm256_max_ps(_mm256_set1_ps(-86.5f), x);
    __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), shifter);
    __m256 n = _mm256_sub_ps(t, shifter);
    __m256 y = exp_reduced(x, n);
    __m256i e = _mm256_slli_epi32(_mm256_castps_si256(t), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(y), e));
}

/* Max of row[0..<valid] and init: four accumulators over whole vectors, a masked tail. */
SSD_T static float row_max_fast(const float *x, long valid, float init) {
    __m256 a0 = _mm256_set1_ps(init), a1 = a0, a2 = a0, a3 = a0;
    long i = 0;
    for (; i + 32 <= valid; i += 32) {
        a0 = _mm256_max_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_max_ps(a1, _mm256_loadu_ps(x + i + 8));
        a2 = _mm256_max_ps(a2, _mm256_loadu_ps(x + i + 16));
        a3 = _mm256_max_ps(a3, _mm256_loadu_ps(x + i + 24));
    }
    for (; i + 8 <= valid; i += 8) a0 = _mm256_max_ps(a0, _mm256_loadu_ps(x + i));
    if (i < valid) a1 = _mm256_blendv_ps(a1, _mm256_max_ps(a1, load(x + i, valid - i)), _mm256_castsi256_ps(lanes(valid - i)));
    return hmax(_mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3)));
}

/* row[j] = exp(row[j] − mx) for j < valid, in place; returns their sum. */
SSD_T static float exp_sub_sum_fast(float *x, long valid, float mx) {
    __m256 vm = _mm256_set1_ps(mx), s0 = _mm256_setzero_ps(), s1 = s0;
    long i = 0;
    for (; i + 16 <= valid; i += 16) {
        __m256 e0 = v_exp_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        __m256 e1 = v_exp_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm));
        _mm256_storeu_ps(x + i, e0);
        _mm256_storeu_ps(x + i + 8, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    for (; i < valid; i += 8) {
        __m256 e = _mm256_and_ps(v_exp_nonpos(_mm256_sub_ps(load(x + i, valid - i), vm)), _mm256_castsi256_ps(lanes(valid - i)));
        store(x + i, valid - i, e);
        s0 = _mm256_add_ps(s0, e);
    }
    return hsum(_mm256_add_ps(s0, s1));
}

SSD_T static void a_online_softmax(float *s, long rows, long cols, long cols_padded, long ldS, float *m, float *l,
                                   float *o, long ldo, long d, int causal, long q0, long k0) {
    for (long i = 0; i < rows; i++) {
        float *row = s + i * ldS;
        long valid = ssd_causal_valid(i, cols, causal, q0, k0);
        for (long j = valid; j < cols_padded; j++) row[j] = 0;
        if (valid == 0) continue;
        float mx = row_max_fast(row, valid, m[i]);
        float sum = exp_sub_sum_fast(row, valid, mx);
        float corr = (m[i] == -INFINITY) ? 0.0f : expf(m[i] - mx);
        l[i] = l[i] * corr + sum;
        m[i] = mx;
        if (corr != 1.0f) rescale_row(o + i * ldo, d, corr);
    }
}

/* ssd_attention_normalize at AVX2 (also used at the AVX-512 levels: d is small, a tail is rare). */
SSD_T void ssd_attention_normalize_avx2(const float *o, long ldo, const float *l, long rows, long d, float *dst, long ldd) {
    for (long i = 0; i < rows; i++) {
        __m256 inv = _mm256_set1_ps(l[i] > 0 ? 1.0f / l[i] : 0.0f);
        const float *src = o + i * ldo;
        float *out = dst + i * ldd;
        long j = 0;
        for (; j + 8 <= d; j += 8) _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_loadu_ps(src + j), inv));
        if (j < d) store(out + j, d - j, _mm256_mul_ps(load(src + j, d - j), inv));
    }
}

/* The bf16 attention's step without native bf16: scale, the fp32 step, then the probabilities
 * rounded to bf16 (as the portable version). */
SSD_T static void a_online_softmax_bf16(float *s, long rows, long cols, long cols_padded, long ldS, float scale,
                                        float *m, float *l, float *o, long ldo, long d, int causal, long q0, long k0,
                                        uint16_t *p, long ldp) {
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++) s[i * ldS + j] *= scale;
    a_online_softmax(s, rows, cols, cols_padded, ldS, m, l, o, ldo, d, causal, q0, k0);
    for (long i = 0; i < rows; i++) ssd_f32_to_bf16(s + i * ldS, p + i * ldp, cols_padded);
}

/* Layer norm of one row, the two sums in double like the portable version. */
SSD_T static void a_layer_norm_row(const float *x, float *y, long n, const float *gamma, const float *beta, float eps) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (long i = 0; i < n; i += 8) {
        __m256 v = load(x + i, n - i);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    float mean = (float)(hsum_pd(_mm256_add_pd(s0, s1)) / (double)n);
    __m256 vmean = _mm256_set1_ps(mean);
    __m256d q0 = _mm256_setzero_pd(), q1 = _mm256_setzero_pd();
    for (long i = 0; i < n; i += 8) {
        __m256 dv = _mm256_and_ps(_mm256_sub_ps(load(x + i, n - i), vmean), _mm256_castsi256_ps(lanes(n - i)));
        __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(dv)), d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(dv, 1));
        q0 = _mm256_fmadd_pd(d0, d0, q0);
        q1 = _mm256_fmadd_pd(d1, d1, q1);
    }
    float rstd = (float)(1.0 / sqrt(hsum_pd(_mm256_add_pd(q0, q1)) / (double)n + (double)eps));
    __m256 vr = _mm256_set1_ps(rstd);
    for (long i = 0; i < n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(load(x + i, n - i), vmean), vr), load(gamma + i, n - i));
        store(y + i, n - i, _mm256_add_ps(v, load(beta + i, n - i)));
    }
}

const ssd_math_table ssd_math_avx2 = {
    a_activation, a_geglu, a_scale_shift_act, a_softmax_row, a_online_softmax, a_online_softmax_bf16, a_layer_norm_row,
};
#endif
