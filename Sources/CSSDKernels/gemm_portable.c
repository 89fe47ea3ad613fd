/* Portable C micro-kernels (any CPU; the compiler vectorises what the baseline ISA allows). */
#include "internal.h"
#include <string.h>

void ssd_uk_f32_portable(long k, const float *const *a, const float *b, float *c, long ldc,
                         int mr, int nr, const ssd_epilogue *e) {
    float acc[SSD_MR][SSD_NR];
    memset(acc, 0, sizeof(acc));
    for (long p = 0; p < k; p++) {
        const float *bp = b + p * SSD_NR;
        for (int i = 0; i < SSD_MR; i++) {
            float av = a[i][p];
            for (int j = 0; j < SSD_NR; j++) acc[i][j] += av * bp[j];
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) c[i * ldc + j] = ssd_epi_value(acc[i][j], e, c + i * ldc + j, i, j);
}

static inline float bf16_lo(uint32_t pair) { uint32_t u = pair << 16; float f; memcpy(&f, &u, 4); return f; }
static inline float bf16_hi(uint32_t pair) { uint32_t u = pair & 0xFFFF0000u; float f; memcpy(&f, &u, 4); return f; }

void ssd_uk_bf16_portable(long kp, const uint32_t *a, const uint16_t *b, float *c, long ldc,
                          int mr, int nr, const ssd_epilogue *e) {
    float acc[SSD_MR][SSD_NR];
    memset(acc, 0, sizeof(acc));
    for (long p = 0; p < kp; p++) {
        const uint32_t *bp = (const uint32_t *)(const void *)(b + p * 2 * SSD_NR);
        for (int i = 0; i < SSD_MR; i++) {
            float a0 = bf16_lo(a[p * SSD_MR + i]), a1 = bf16_hi(a[p * SSD_MR + i]);
            for (int j = 0; j < SSD_NR; j++) {
                uint32_t bb;
                memcpy(&bb, bp + j, 4);
                acc[i][j] += a0 * bf16_lo(bb) + a1 * bf16_hi(bb);
            }
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) c[i * ldc + j] = ssd_epi_value(acc[i][j], e, c + i * ldc + j, i, j);
}
