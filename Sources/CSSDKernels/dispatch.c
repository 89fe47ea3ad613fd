/* Run-time selection of the kernel variants, and the GEMM macro-kernels. */
#include "internal.h"
#include <string.h>
#include <stdlib.h>

static int detected_level = -1;
static int active_level = 0;
static ssd_ukernel_f32 uk_f32 = ssd_uk_f32_portable;
static ssd_ukernel_bf16 uk_bf16 = ssd_uk_bf16_portable;
static const ssd_math_table *math = &ssd_math_portable;

static int detect(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    int level = SSD_ISA_PORTABLE;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) level = SSD_ISA_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        level = SSD_ISA_AVX512;
    if (level == SSD_ISA_AVX512 && __builtin_cpu_supports("avx512bf16")) level = SSD_ISA_AVX512_BF16;
    if (level == SSD_ISA_AVX512_BF16 && __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16") &&
        ssd_amx_request())
        level = SSD_ISA_AMX_BF16;
    return level;
#elif defined(__aarch64__)
    return SSD_ISA_NEON;
#else
    return SSD_ISA_PORTABLE;
#endif
}

static void apply(int level) {
    active_level = level;
    uk_f32 = ssd_uk_f32_portable;
    uk_bf16 = ssd_uk_bf16_portable;
    math = &ssd_math_portable;
#if defined(__x86_64__) || defined(__i386__)
    if (level >= SSD_ISA_AVX2) { uk_f32 = ssd_uk_f32_avx2; math = &ssd_math_avx2; }
    if (level >= SSD_ISA_AVX512) { uk_f32 = ssd_uk_f32_avx512; math = &ssd_math_avx512; }
    if (level >= SSD_ISA_AVX512_BF16) uk_bf16 = ssd_uk_bf16_avx512;
#elif defined(__aarch64__)
    if (level == SSD_ISA_NEON) uk_f32 = ssd_uk_f32_neon;
#endif
}

__attribute__((constructor)) static void ssd_kernels_init(void) {
    detected_level = detect();
    apply(detected_level);
}

int ssd_isa_detected(void) { return detected_level; }
int ssd_isa(void) { return active_level; }
int ssd_bf16_native(void) { return active_level >= SSD_ISA_AVX512_BF16; }

int ssd_set_isa(int level) {
    if (level > detected_level) level = detected_level;
#if defined(__aarch64__)
    if (level != SSD_ISA_NEON) level = SSD_ISA_PORTABLE;
#else
    if (level < 0 || level == SSD_ISA_NEON) level = SSD_ISA_PORTABLE;
#endif
    apply(level);
    return active_level;
}

/* Macro-kernel. Row tiles outer: the 6 × k slice of A stays in L1 while the k × n block of
 * B streams from L2. */
void ssd_sgemm(const ssd_gemm_args *g) {
    const float *rows[SSD_MR];
    ssd_epilogue e = {g->alpha, g->accumulate, NULL, NULL, g->ldr};
    long panels = (g->n + SSD_NR - 1) / SSD_NR;
    for (long i0 = 0; i0 < g->m; i0 += SSD_MR) {
        int mr = (int)(g->m - i0 < SSD_MR ? g->m - i0 : SSD_MR);
        for (int i = 0; i < SSD_MR; i++) rows[i] = g->a_rows[i0 + (i < mr ? i : 0)] + g->a_offset;
        for (long jp = 0; jp < panels; jp++) {
            long col = jp * SSD_NR;
            int nr = (int)(g->n - col < SSD_NR ? g->n - col : SSD_NR);
            e.bias = g->bias ? g->bias + col : NULL;
            e.residual = g->residual ? g->residual + i0 * g->ldr + col : NULL;
            uk_f32(g->k, rows, (const float *)g->b + jp * g->b_panel_stride, g->c + i0 * g->ldc + col, g->ldc, mr, nr, &e);
        }
    }
}

static inline uint16_t to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1)) >> 16);
}

/* bf16 macro-kernel: converts A once into [tile][k/2][SSD_MR] pairs, then row tiles outer. */
void ssd_bf16gemm(const ssd_gemm_args *g) {
#if defined(__x86_64__)
    if (active_level == SSD_ISA_AMX_BF16) { ssd_bf16gemm_amx(g); return; }
#endif
    long kp = (g->k + 1) / 2;
    long tiles = (g->m + SSD_MR - 1) / SSD_MR;
    uint32_t *ap = (uint32_t *)(((uintptr_t)g->scratch + 63) & ~(uintptr_t)63);
    for (long t = 0; t < tiles; t++) {
        uint32_t *dst = ap + t * kp * SSD_MR;
        for (int i = 0; i < SSD_MR; i++) {
            long r = t * SSD_MR + i;
            if (r >= g->m) r = t * SSD_MR;
            const float *src = g->a_rows[r] + g->a_offset;
            for (long p = 0; p < kp; p++) {
                uint16_t lo = to_bf16(src[2 * p]);
                uint16_t hi = (2 * p + 1 < g->k) ? to_bf16(src[2 * p + 1]) : 0;
                dst[p * SSD_MR + i] = (uint32_t)lo | ((uint32_t)hi << 16);
            }
        }
    }
    ssd_epilogue e = {g->alpha, g->accumulate, NULL, NULL, g->ldr};
    long panels = (g->n + SSD_NR - 1) / SSD_NR;
    for (long t = 0; t < tiles; t++) {
        long i0 = t * SSD_MR;
        int mr = (int)(g->m - i0 < SSD_MR ? g->m - i0 : SSD_MR);
        for (long jp = 0; jp < panels; jp++) {
            long col = jp * SSD_NR;
            int nr = (int)(g->n - col < SSD_NR ? g->n - col : SSD_NR);
            e.bias = g->bias ? g->bias + col : NULL;
            e.residual = g->residual ? g->residual + i0 * g->ldr + col : NULL;
            uk_bf16(kp, ap + t * kp * SSD_MR, (const uint16_t *)g->b + jp * g->b_panel_stride,
                    g->c + i0 * g->ldc + col, g->ldc, mr, nr, &e);
        }
    }
}

int ssd_amx_active(void) { return active_level == SSD_ISA_AMX_BF16; }

void ssd_rows_to_bf16(const float *const *rows, long m, long len, long padded, uint16_t *dst, long ld) {
#if defined(__x86_64__)
    if (active_level >= SSD_ISA_AVX512_BF16) { ssd_rows_to_bf16_avx512(rows, m, len, padded, dst, ld); return; }
#endif
    for (long r = 0; r < m; r++) {
        ssd_f32_to_bf16(rows[r], dst + r * ld, len);
        memset(dst + r * ld + len, 0, (size_t)(padded - len) * 2);
    }
}

void ssd_rows_to_bf16x2(const float *const *rows, long m, long len, long padded, uint16_t *dst, long ld) {
#if defined(__x86_64__)
    if (active_level >= SSD_ISA_AVX512_BF16) { ssd_rows_to_bf16x2_avx512(rows, m, len, padded, dst, ld); return; }
#endif
    for (long r = 0; r < m; r++) {
        uint16_t *d = dst + r * ld;
        for (long j = 0; j < padded; j++) {
            float x = j < len ? rows[r][j] : 0.0f, h;
            uint16_t *hi = d + (j / 32) * 64 + j % 32;
            ssd_f32_to_bf16(&x, hi, 1);
            ssd_bf16_to_f32(hi, &h, 1);
            x -= h;
            ssd_f32_to_bf16(&x, hi + 32, 1);
        }
    }
}

static inline float bf16_value(uint16_t v) {
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Element (stored depth d, column c) of bf16 k-pair panels (panel base `b`). */
static inline float pair_at(const uint16_t *b, long d, long c) { return bf16_value(b[(d / 2) * 2 * SSD_NR + c * 2 + d % 2]); }

/* Without AMX (only reached should the level drop while a call is on its way): the same three
 * products, one output at a time. */
void ssd_bf16x3gemm_bf16a(const uint16_t *a, long lda, const ssd_gemm_args *g) {
#if defined(__x86_64__)
    if (active_level == SSD_ISA_AMX_BF16) { ssd_bf16x3gemm_amx_bf16a(a, lda, g); return; }
#endif
    for (long i = 0; i < g->m; i++) {
        const uint16_t *row = a + i * lda;
        for (long j = 0; j < g->n; j++) {
            const uint16_t *b = (const uint16_t *)g->b + (j / SSD_NR) * g->b_panel_stride;
            long c = j % SSD_NR;
            float sum = 0;
            for (long p = 0; p < g->k; p += 64) {
                for (long q = p; q < p + 32; q++) {
                    float ah = bf16_value(row[q]), al = bf16_value(row[q + 32]);
                    sum += ah * pair_at(b, q, c) + al * pair_at(b, q, c) + ah * pair_at(b, q + 32, c);
                }
            }
            float *out = g->c + i * g->ldc + j;
            float v = g->alpha * sum + (g->accumulate ? *out : 0.0f);
            if (g->bias) v += g->bias[j];
            if (g->residual) v += g->residual[i * g->ldr + j];
            *out = v;
        }
    }
}

void ssd_pack_bf16x2_panel(const float *src, long k, long kpad, uint16_t *dst) {
#if defined(__x86_64__)
    if (active_level >= SSD_ISA_AVX512_BF16) { ssd_pack_bf16x2_panel_avx512(src, k, kpad, dst); return; }
#endif
    for (long kk = 0; kk < kpad; kk++) {
        long d = (kk / 32) * 64 + kk % 32;
        for (long c = 0; c < SSD_NR; c++) {
            float x = kk < k ? src[kk * SSD_NR + c] : 0.0f, h;
            uint16_t hi, lo;
            ssd_f32_to_bf16(&x, &hi, 1);
            ssd_bf16_to_f32(&hi, &h, 1);
            x -= h;
            ssd_f32_to_bf16(&x, &lo, 1);
            dst[(d / 2) * 2 * SSD_NR + c * 2 + d % 2] = hi;
            dst[((d + 32) / 2) * 2 * SSD_NR + c * 2 + d % 2] = lo;
        }
    }
}

void ssd_bf16x2_pairs_to_f32(const uint16_t *src, long kb, float *dst) {
    for (long kk = 0; kk < kb; kk++) {
        long d = (kk / 32) * 64 + kk % 32;
        for (long c = 0; c < SSD_NR; c++) dst[kk * SSD_NR + c] = pair_at(src, d, c) + pair_at(src, d + 32, c);
    }
}

void ssd_layer_norm_to_bf16(const float *x, long rows, long n, const float *gamma, const float *beta, float eps,
                            long padded, uint16_t *dst, long ld) {
    float *row = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!row) return;
    for (long r = 0; r < rows; r++) {
        const float *normed = row;
        math->layer_norm_row(x + r * n, row, n, gamma, beta, eps);
        ssd_rows_to_bf16(&normed, 1, n, padded, dst + r * ld, ld);
    }
    free(row);
}

/* Split rows of a layer norm (gamma set) or of GEGLU (gamma NULL; x rows 2n wide), one fp32 row at a time. */
static void split_rows_of(const float *x, long rows, long n, const float *gamma, const float *beta, float eps,
                          long padded, uint16_t *dst, long ld) {
    float *row = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!row) return;
    for (long r = 0; r < rows; r++) {
        const float *made = row;
        if (gamma) math->layer_norm_row(x + r * n, row, n, gamma, beta, eps);
        else math->geglu(x + r * 2 * n, row, 1, n);
        ssd_rows_to_bf16x2(&made, 1, n, padded, dst + r * ld, ld);
    }
    free(row);
}

void ssd_layer_norm_to_bf16x2(const float *x, long rows, long n, const float *gamma, const float *beta, float eps,
                              long padded, uint16_t *dst, long ld) {
    split_rows_of(x, rows, n, gamma, beta, eps, padded, dst, ld);
}

void ssd_geglu_to_bf16x2(const float *x, long rows, long n, long padded, uint16_t *dst, long ld) {
    split_rows_of(x, rows, n, NULL, NULL, 0, padded, dst, ld);
}

void ssd_geglu_to_bf16(const float *x, long rows, long n, long padded, uint16_t *dst, long ld) {
#if defined(__x86_64__)
    if (active_level >= SSD_ISA_AVX512_BF16) { ssd_geglu_to_bf16_avx512(x, rows, n, padded, dst, ld); return; }
#endif
    float *row = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!row) return;
    for (long r = 0; r < rows; r++) {
        math->geglu(x + r * 2 * n, row, 1, n);
        ssd_f32_to_bf16(row, dst + r * ld, n);
        memset(dst + r * ld + n, 0, (size_t)(padded - n) * 2);
    }
    free(row);
}

/* Without AMX: each 6-row tile of the bf16 rows is regrouped into k-pairs for the bf16
 * micro-kernel (vdpbf16ps or portable). */
void ssd_bf16gemm_bf16a(const uint16_t *a, long lda, const ssd_gemm_args *g) {
#if defined(__x86_64__)
    if (active_level == SSD_ISA_AMX_BF16) { ssd_bf16gemm_amx_bf16a(a, lda, g); return; }
#endif
    long kp = g->k / 2;
    uint32_t *ap = (uint32_t *)(((uintptr_t)g->scratch + 63) & ~(uintptr_t)63);
    ssd_epilogue e = {g->alpha, g->accumulate, NULL, NULL, g->ldr};
    long panels = (g->n + SSD_NR - 1) / SSD_NR;
    for (long i0 = 0; i0 < g->m; i0 += SSD_MR) {
        int mr = (int)(g->m - i0 < SSD_MR ? g->m - i0 : SSD_MR);
        for (int i = 0; i < SSD_MR; i++) {
            const uint16_t *src = a + (i0 + (i < mr ? i : 0)) * lda;
            for (long p = 0; p < kp; p++) {
                uint32_t pair;
                memcpy(&pair, src + 2 * p, 4);
                ap[p * SSD_MR + i] = pair;
            }
        }
        for (long jp = 0; jp < panels; jp++) {
            long col = jp * SSD_NR;
            int nr = (int)(g->n - col < SSD_NR ? g->n - col : SSD_NR);
            e.bias = g->bias ? g->bias + col : NULL;
            e.residual = g->residual ? g->residual + i0 * g->ldr + col : NULL;
            uk_bf16(kp, ap, (const uint16_t *)g->b + jp * g->b_panel_stride, g->c + i0 * g->ldc + col, g->ldc, mr, nr, &e);
        }
    }
}

/* Without AMX: each 16-row tile is gathered into bf16 rows and multiplied as such. */
void ssd_bf16gemm_tiles(const uint16_t *const *tiles, long segments, long seg_len, long astride, const ssd_gemm_args *g) {
#if defined(__x86_64__)
    if (active_level == SSD_ISA_AMX_BF16) { ssd_bf16gemm_amx_tiles(tiles, segments, seg_len, astride, g); return; }
#endif
    long k = g->k;
    uint16_t *rows = (uint16_t *)(((uintptr_t)g->scratch + 63) & ~(uintptr_t)63);
    ssd_gemm_args t = *g;
    t.scratch = rows + 16 * k;
    for (long i0 = 0; i0 < g->m; i0 += 16) {
        long tile = i0 / 16;
        for (int i = 0; i < 16; i++)
            for (long s = 0; s < segments; s++)
                memcpy(rows + i * k + s * seg_len, (const char *)tiles[tile * segments + s] + i * astride, (size_t)seg_len * 2);
        t.m = g->m - i0 < 16 ? g->m - i0 : 16;
        t.c = g->c + i0 * g->ldc;
        t.residual = g->residual ? g->residual + i0 * g->ldr : NULL;
        ssd_bf16gemm_bf16a(rows, k, &t);
    }
}

void ssd_activation(const float *x, float *y, long n, int kind) { math->activation(x, y, n, kind); }
void ssd_geglu(const float *x, float *y, long rows, long n) { math->geglu(x, y, rows, n); }
void ssd_scale_shift_act(const float *x, float *y, long rows, long channels, const float *scale,
                         const float *shift, int act) {
    math->scale_shift_act(x, y, rows, channels, scale, shift, act);
}
void ssd_softmax_row(const float *x, float *y, long n, long valid) { math->softmax_row(x, y, n, valid); }
void ssd_online_softmax(float *s, long rows, long cols, long cols_padded, long ldS, float *m, float *l,
                        float *o, long ldo, long d, int causal, long q0, long k0) {
    math->online_softmax(s, rows, cols, cols_padded, ldS, m, l, o, ldo, d, causal, q0, k0);
}
void ssd_attention_normalize(const float *o, long ldo, const float *l, long rows, long d, float *dst, long ldd) {
#if defined(__x86_64__) || defined(__i386__)
    if (active_level >= SSD_ISA_AVX2) { ssd_attention_normalize_avx2(o, ldo, l, rows, d, dst, ldd); return; }
#endif
    for (long i = 0; i < rows; i++) {
        float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
        for (long j = 0; j < d; j++) dst[i * ldd + j] = o[i * ldo + j] * inv;
    }
}

void ssd_zero_floats(float *x, long n) {
    if (n > 0) memset(x, 0, (size_t)n * sizeof(float));
}

void ssd_online_softmax_bf16(float *s, long rows, long cols, long cols_padded, long ldS, float scale, float *m, float *l,
                             float *o, long ldo, long d, int causal, long q0, long k0, uint16_t *p, long ldp) {
#if defined(__x86_64__)
    if (active_level >= SSD_ISA_AVX512_BF16) {
        ssd_online_softmax_bf16_native(s, rows, cols, cols_padded, ldS, scale, m, l, o, ldo, d, causal, q0, k0, p, ldp);
        return;
    }
#endif
    math->online_softmax_bf16(s, rows, cols, cols_padded, ldS, scale, m, l, o, ldo, d, causal, q0, k0, p, ldp);
}
void ssd_layer_norm_row(const float *x, float *y, long n, const float *gamma, const float *beta, float eps) {
    math->layer_norm_row(x, y, n, gamma, beta, eps);
}

