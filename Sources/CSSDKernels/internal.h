/* Private declarations shared by the kernel files of CSSDKernels. */
#ifndef SSD_INTERNAL_H
#define SSD_INTERNAL_H
#include "CSSDKernels.h"

/* Epilogue of one micro-tile. */
typedef struct ssd_epilogue {
    float alpha;
    int accumulate;
    const float *bias;      /* offset to the tile's first column, or NULL */
    const float *residual;  /* offset to the tile's first element, or NULL */
    long ldr;
} ssd_epilogue;

/* fp32 micro-kernel: C[mr × nr] (+)= A rows (SSD_MR pointers, rows ≥ mr repeat row 0) · B panel. */
typedef void (*ssd_ukernel_f32)(long k, const float *const *a, const float *b, float *c, long ldc,
                                int mr, int nr, const ssd_epilogue *e);
/* bf16 micro-kernel: A packed as [k/2][SSD_MR] bf16 pairs, B as bf16 pair panels. */
typedef void (*ssd_ukernel_bf16)(long kpairs, const uint32_t *a, const uint16_t *b, float *c, long ldc,
                                 int mr, int nr, const ssd_epilogue *e);

void ssd_uk_f32_portable(long k, const float *const *a, const float *b, float *c, long ldc, int mr, int nr, const ssd_epilogue *e);
void ssd_uk_bf16_portable(long kp, const uint32_t *a, const uint16_t *b, float *c, long ldc, int mr, int nr, const ssd_epilogue *e);
#if defined(__x86_64__) || defined(__i386__)
void ssd_attention_normalize_avx2(const float *o, long ldo, const float *l, long rows, long d, float *dst, long ldd);
void ssd_uk_f32_avx2(long k, const float *const *a, const float *b, float *c, long ldc, int mr, int nr, const ssd_epilogue *e);
void ssd_uk_f32_avx512(long k, const float *const *a, const float *b, float *c, long ldc, int mr, int nr, const ssd_epilogue *e);
int ssd_amx_request(void);
void ssd_bf16gemm_amx(const ssd_gemm_args *g);
void ssd_bf16gemm_amx_bf16a(const uint16_t *a, long lda, const ssd_gemm_args *g);
void ssd_bf16gemm_amx_tiles(const uint16_t *const *tiles, long segments, long seg_len, long astride, const ssd_gemm_args *g);
void ssd_bf16x3gemm_amx_bf16a(const uint16_t *a, long lda, const ssd_gemm_args *g);
void ssd_pack_bf16x2_panel_avx512(const float *src, long k, long kpad, uint16_t *dst);
void ssd_rows_to_bf16x2_avx512(const float *const *rows, long m, long len, long padded, uint16_t *dst, long ld);
void ssd_rows_to_bf16_avx512(const float *const *rows, long m, long len, long padded, uint16_t *dst, long ld);
void ssd_geglu_to_bf16_avx512(const float *x, long rows, long n, long padded, uint16_t *dst, long ld);
void ssd_online_softmax_bf16_native(float *s, long rows, long cols, long cols_padded, long ldS, float scale, float *m,
                                    float *l, float *o, long ldo, long d, int causal, long q0, long k0, uint16_t *p,
                                    long ldp);
void ssd_uk_bf16_avx512(long kp, const uint32_t *a, const uint16_t *b, float *c, long ldc, int mr, int nr, const ssd_epilogue *e);
void ssd_wino_input_f43_avx2(const float *src, long rs, long ch, long tiles, float *v, long vts, long vxs);
void ssd_wino_weight_f43_avx2(const float *g, long cin, float *u, long uxs);
void ssd_wino_output_f43_avx2(const float *m, long mxs, long ch, const float *bias, const float *residual,
                              float *y, long yrs, long yps, int rows, int cols);
void ssd_wino_input_f43_avx512(const float *src, long rs, long ch, long tiles, float *v, long vts, long vxs);
void ssd_wino_weight_f43_avx512(const float *g, long cin, float *u, long uxs);
void ssd_wino_output_f43_avx512(const float *m, long mxs, long ch, const float *bias, const float *residual,
                                float *y, long yrs, long yps, int rows, int cols);
#endif
#if defined(__aarch64__)
void ssd_uk_f32_neon(long k, const float *const *a, const float *b, float *c, long ldc, int mr, int nr, const ssd_epilogue *e);
#endif

/* Scalar epilogue for one element (used by the portable kernels and edges). */
static inline float ssd_epi_value(float acc, const ssd_epilogue *e, float *c, long i, long j) {
    float v = e->alpha * acc;
    if (e->accumulate) v += *c;
    if (e->bias) v += e->bias[j];
    if (e->residual) v += e->residual[i * e->ldr + j];
    return v;
}

/* Keys row i of an online-softmax block keeps: all `cols`, or with a causal mask those up to its
 * query (key index k0 + j ≤ q0 + i). */
static inline long ssd_causal_valid(long i, long cols, int causal, long q0, long k0) {
    long lim = q0 + i - k0 + 1;
    if (!causal || lim >= cols) return cols;
    return lim < 0 ? 0 : lim;
}

/* Math kernels per ISA (the portable ones use libm). */
typedef struct ssd_math_table {
    void (*activation)(const float *, float *, long, int);
    void (*geglu)(const float *, float *, long, long);
    void (*scale_shift_act)(const float *, float *, long, long, const float *, const float *, int);
    void (*softmax_row)(const float *, float *, long, long);
    void (*online_softmax)(float *, long, long, long, long, float *, float *, float *, long, long, int, long, long);
    void (*online_softmax_bf16)(float *, long, long, long, long, float, float *, float *, float *, long, long, int, long,
                                long, uint16_t *, long);
    void (*layer_norm_row)(const float *, float *, long, const float *, const float *, float);
} ssd_math_table;

extern const ssd_math_table ssd_math_portable;
#if defined(__x86_64__) || defined(__i386__)
extern const ssd_math_table ssd_math_avx2;
extern const ssd_math_table ssd_math_avx512;
#endif
#endif
