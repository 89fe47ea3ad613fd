/* Portable math kernels (libm), and the ISA-independent helpers. */
#include "internal.h"
#include <math.h>
#include <string.h>

static inline float act_scalar(float v, int kind) {
    switch (kind) {
    case SSD_ACT_SILU: return v / (1.0f + expf(-v));
    case SSD_ACT_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case SSD_ACT_QUICK_GELU: return v / (1.0f + expf(-1.702f * v));
    case SSD_ACT_RELU: return v < 0.0f ? 0.0f : v;
    case SSD_ACT_TANH: return tanhf(v);
    default: return v;
    }
}

static void p_activation(const float *x, float *y, long n, int kind) {
    for (long i = 0; i < n; i++) y[i] = act_scalar(x[i], kind);
}

static void p_geglu(const float *x, float *y, long rows, long n) {
    for (long r = 0; r < rows; r++) {
        const float *h = x + r * 2 * n, *g = h + n;
        for (long i = 0; i < n; i++) y[r * n + i] = h[i] * act_scalar(g[i], SSD_ACT_GELU);
    }
}

static void p_scale_shift_act(const float *x, float *y, long rows, long ch, const float *scale,
                              const float *shift, int act) {
    for (long r = 0; r < rows; r++)
        for (long c = 0; c < ch; c++) y[r * ch + c] = act_scalar(x[r * ch + c] * scale[c] + shift[c], act);
}

static void p_softmax_row(const float *x, float *y, long n, long valid) {
    float mx = -INFINITY;
    for (long i = 0; i < valid; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (long i = 0; i < valid; i++) { y[i] = expf(x[i] - mx); sum += y[i]; }
    float inv = (float)(1.0 / sum);
    for (long i = 0; i < valid; i++) y[i] *= inv;
    for (long i = valid; i < n; i++) y[i] = 0;
}

static void p_online_softmax(float *s, long rows, long cols, long cols_padded, long ldS, float *m, float *l,
                             float *o, long ldo, long d, int causal, long q0, long k0) {
    for (long i = 0; i < rows; i++) {
        float *row = s + i * ldS;
        long valid = ssd_causal_valid(i, cols, causal, q0, k0);
        float mx = m[i];
        for (long j = 0; j < valid; j++) mx = row[j] > mx ? row[j] : mx;
        float sum = 0;
        for (long j = 0; j < valid; j++) { row[j] = expf(row[j] - mx); sum += row[j]; }
        for (long j = valid; j < cols_padded; j++) row[j] = 0;
        float corr = (m[i] == -INFINITY) ? 0.0f : expf(m[i] - mx);
        if (valid == 0) { corr = 1.0f; mx = m[i]; }
        l[i] = l[i] * corr + sum;
        m[i] = mx;
        if (corr != 1.0f)
            for (long j = 0; j < d; j++) o[i * ldo + j] *= corr;
    }
}

static void p_online_softmax_bf16(float *s, long rows, long cols, long cols_padded, long ldS, float scale, float *m,
                                  float *l, float *o, long ldo, long d, int causal, long q0, long k0, uint16_t *p,
                                  long ldp) {
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++) s[i * ldS + j] *= scale;
    p_online_softmax(s, rows, cols, cols_padded, ldS, m, l, o, ldo, d, causal, q0, k0);
    for (long i = 0; i < rows; i++) ssd_f32_to_bf16(s + i * ldS, p + i * ldp, cols_padded);
}

static void p_layer_norm_row(const float *x, float *y, long n, const float *gamma, const float *beta, float eps);

const ssd_math_table ssd_math_portable = {
    p_activation, p_geglu, p_scale_shift_act, p_softmax_row, p_online_softmax, p_online_softmax_bf16, p_layer_norm_row,
};

/* ISA-independent helpers (memory bound; the compiler vectorises them). */

void ssd_channel_sum(const float *x, long rows, long ch, double *sum) {
    float acc[256];
    for (long c0 = 0; c0 < ch; c0 += 256) {
        long cn = ch - c0 < 256 ? ch - c0 : 256;
        memset(acc, 0, sizeof(float) * (size_t)cn);
        for (long r = 0; r < rows; r++) {
            const float *xr = x + r * ch + c0;
            for (long c = 0; c < cn; c++) acc[c] += xr[c];
        }
        for (long c = 0; c < cn; c++) sum[c0 + c] += acc[c];
    }
}

void ssd_channel_sqdev(const float *x, long rows, long ch, const float *mean, double *sq) {
    float acc[256];
    for (long c0 = 0; c0 < ch; c0 += 256) {
        long cn = ch - c0 < 256 ? ch - c0 : 256;
        memset(acc, 0, sizeof(float) * (size_t)cn);
        for (long r = 0; r < rows; r++) {
            const float *xr = x + r * ch + c0;
            for (long c = 0; c < cn; c++) { float dv = xr[c] - mean[c0 + c]; acc[c] += dv * dv; }
        }
        for (long c = 0; c < cn; c++) sq[c0 + c] += acc[c];
    }
}

static void p_layer_norm_row(const float *x, float *y, long n, const float *gamma, const float *beta, float eps) {
    double s = 0;
    for (long i = 0; i < n; i++) s += x[i];
    float mean = (float)(s / (double)n);
    double v = 0;
    for (long i = 0; i < n; i++) { float dv = x[i] - mean; v += (double)dv * dv; }
    float rstd = (float)(1.0 / sqrt(v / (double)n + (double)eps));
    for (long i = 0; i < n; i++) y[i] = (x[i] - mean) * rstd * gamma[i] + beta[i];
}

void ssd_affine(const float *x, float *y, long n, float scale, float shift) {
    for (long i = 0; i < n; i++) y[i] = x[i] * scale + shift;
}

static inline float f16_to_f32_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0) {
        if (mant == 0) bits = sign;
        else {
            uint32_t e = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; e--; }
            bits = sign | (e << 23) | ((mant & 0x3FF) << 13);
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13) | (mant ? 0x400000u : 0);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t f32_to_f16_scalar(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return sign | 0x7C00 | (ax > 0x7F800000u ? (uint16_t)(0x200 | ((ax >> 13) & 0x3FF)) : 0);
    if (ax >= 0x47800000u) return sign | 0x7C00;
    if (ax < 0x38800000u) {
        if (ax < 0x33000000u) return sign;
        uint32_t e = ax >> 23, mm = (ax & 0x7FFFFF) | 0x800000, s = 126 - e;
        uint32_t q = mm >> s, rem = mm & ((1u << s) - 1), half = 1u << (s - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = (ax >> 13) - ((127 - 15) << 10), rem = ax & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return sign | (uint16_t)r;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
__attribute__((target("avx512f,avx512vl")))
static long f16_to_f32_avx512(const uint16_t *src, float *dst, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(src + i))));
    return i;
}
/* AVX2-level CPUs convert with F16C (all known ones have it; checked once). */
__attribute__((target("avx2,f16c")))
static long f16_to_f32_f16c(const uint16_t *src, float *dst, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src + i))));
    return i;
}
static int has_f16c(void) {
    static int known = -1;
    if (known < 0) { __builtin_cpu_init(); known = __builtin_cpu_supports("f16c") ? 1 : 0; }
    return known;
}
#endif

void ssd_f16_to_f32(const uint16_t *src, float *dst, long n) {
    long i = 0;
#if defined(__x86_64__) || defined(__i386__)
    if (ssd_isa() >= SSD_ISA_AVX512) i = f16_to_f32_avx512(src, dst, n);
    else if (ssd_isa() >= SSD_ISA_AVX2 && has_f16c()) i = f16_to_f32_f16c(src, dst, n);
#endif
    for (; i < n; i++) dst[i] = f16_to_f32_scalar(src[i]);
}

void ssd_bf16_to_f32(const uint16_t *src, float *dst, long n) {
    for (long i = 0; i < n; i++) { uint32_t u = (uint32_t)src[i] << 16; memcpy(dst + i, &u, 4); }
}

void ssd_f32_to_f16(const float *src, uint16_t *dst, long n) {
    for (long i = 0; i < n; i++) dst[i] = f32_to_f16_scalar(src[i]);
}

void ssd_f32_to_bf16(const float *src, uint16_t *dst, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, src + i, 4);
        if ((x & 0x7FFFFFFFu) > 0x7F800000u) dst[i] = (uint16_t)((x >> 16) | 0x40);
        else dst[i] = (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1)) >> 16);
    }
}
