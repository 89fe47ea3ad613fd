/* AVX-512F + FMA micro-kernels: fp32 6×64, and the AVX512_BF16 (vdpbf16ps) 6×64. */
#if defined(__x86_64__) || defined(__i386__)
#include "internal.h"
#include <immintrin.h>

#define SSD_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define SSD_AVX512BF16 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma,avx512bf16")))

/* Stores the 6×64 accumulators through the epilogue: whole tiles fully unrolled (the
 * accumulators stay in registers); edge tiles go through a stack copy with lane masks. */
#define SSD_STORE_TILE(ACC)                                                            \
    do {                                                                               \
        __m512 valpha = _mm512_set1_ps(e->alpha);                                     \
        if (mr == 6 && nr == 64) {                                                     \
            _Pragma("clang loop unroll(full)")                                         \
            for (int i = 0; i < 6; i++) {                                              \
                float *crow = c + i * ldc;                                             \
                _Pragma("clang loop unroll(full)")                                     \
                for (int j = 0; j < 4; j++) {                                          \
                    __m512 v = _mm512_mul_ps(ACC[i][j], valpha);                       \
                    if (e->accumulate) v = _mm512_add_ps(v, _mm512_loadu_ps(crow + 16 * j)); \
                    if (e->bias) v = _mm512_add_ps(v, _mm512_loadu_ps(e->bias + 16 * j)); \
                    if (e->residual) v = _mm512_add_ps(v, _mm512_loadu_ps(e->residual + i * e->ldr + 16 * j)); \
                    _mm512_storeu_ps(crow + 16 * j, v);                                \
                }                                                                      \
            }                                                                          \
        } else {                                                                       \
            float tile[6][64];                                                         \
            _Pragma("clang loop unroll(full)")                                         \
            for (int i = 0; i < 6; i++) {                                              \
                _Pragma("clang loop unroll(full)")                                     \
                for (int j = 0; j < 4; j++) _mm512_storeu_ps(&tile[i][16 * j], ACC[i][j]); \
            }                                                                          \
            for (int i = 0; i < mr; i++) {                                             \
                float *crow = c + i * ldc;                                             \
                for (int j = 0; j < 4; j++) {                                          \
                    int lo = j * 16;                                                   \
                    if (lo >= nr) break;                                               \
                    int cnt = nr - lo < 16 ? nr - lo : 16;                             \
                    __mmask16 mk = (__mmask16)(cnt == 16 ? 0xFFFF : ((1u << cnt) - 1)); \
                    __m512 v = _mm512_mul_ps(_mm512_loadu_ps(&tile[i][lo]), valpha);   \
                    if (e->accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, crow + lo)); \
                    if (e->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, e->bias + lo)); \
                    if (e->residual) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, e->residual + i * e->ldr + lo)); \
                    _mm512_mask_storeu_ps(crow + lo, mk, v);                           \
                }                                                                      \
            }                                                                          \
        }                                                                              \
    } while (0)

/* Prefetches the C tile that the epilogue will read. */
#define SSD_PREFETCH_C()                                                               \
    do {                                                                               \
        if (e->accumulate)                                                             \
            for (int i = 0; i < mr; i++)                                               \
                for (int j = 0; j < 4; j++) _mm_prefetch((const char *)(c + i * ldc + 16 * j), _MM_HINT_T0); \
    } while (0)

SSD_AVX512
void ssd_uk_f32_avx512(long k, const float *const *a, const float *b, float *c, long ldc,
                       int mr, int nr, const ssd_epilogue *e) {
    __m512 acc[6][4];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    SSD_PREFETCH_C();
    for (long p = 0; p < k; p++) {
        const float *bp = b + p * 64;
        __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        __m512 b2 = _mm512_loadu_ps(bp + 32), b3 = _mm512_loadu_ps(bp + 48);
        __m512 av;
#define SSD_ROW(I, AP)                                   \
        av = _mm512_set1_ps(AP[p]);                      \
        acc[I][0] = _mm512_fmadd_ps(av, b0, acc[I][0]);  \
        acc[I][1] = _mm512_fmadd_ps(av, b1, acc[I][1]);  \
        acc[I][2] = _mm512_fmadd_ps(av, b2, acc[I][2]);  \
        acc[I][3] = _mm512_fmadd_ps(av, b3, acc[I][3]);
        SSD_ROW(0, a0) SSD_ROW(1, a1) SSD_ROW(2, a2) SSD_ROW(3, a3) SSD_ROW(4, a4) SSD_ROW(5, a5)
#undef SSD_ROW
    }
    SSD_STORE_TILE(acc);
}

SSD_AVX512BF16
void ssd_uk_bf16_avx512(long kp, const uint32_t *a, const uint16_t *b, float *c, long ldc,
                        int mr, int nr, const ssd_epilogue *e) {
    __m512 acc[6][4];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    SSD_PREFETCH_C();
    for (long p = 0; p < kp; p++) {
        const uint16_t *bp = b + p * 128;
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp), b1 = (__m512bh)_mm512_loadu_si512(bp + 32);
        __m512bh b2 = (__m512bh)_mm512_loadu_si512(bp + 64), b3 = (__m512bh)_mm512_loadu_si512(bp + 96);
        const uint32_t *ap = a + p * 6;
        __m512bh av;
#define SSD_ROW(I)                                                  \
        av = (__m512bh)_mm512_set1_epi32((int)ap[I]);               \
        acc[I][0] = _mm512_dpbf16_ps(acc[I][0], av, b0);            \
        acc[I][1] = _mm512_dpbf16_ps(acc[I][1], av, b1);            \
        acc[I][2] = _mm512_dpbf16_ps(acc[I][2], av, b2);            \
        acc[I][3] = _mm512_dpbf16_ps(acc[I][3], av, b3);
        SSD_ROW(0) SSD_ROW(1) SSD_ROW(2) SSD_ROW(3) SSD_ROW(4) SSD_ROW(5)
#undef SSD_ROW
    }
    SSD_STORE_TILE(acc);
}
#endif
