/* NEON micro-kernel (arm64): the 6×64 tile as four 6×16 passes (24 q-register accumulators). */
#if defined(__aarch64__)
#include "internal.h"
#include <arm_neon.h>

void ssd_uk_f32_neon(long k, const float *const *a, const float *b, float *c, long ldc,
                     int mr, int nr, const ssd_epilogue *e) {
    for (int q = 0; q < 4; q++) {
        int lo = q * 16;
        if (lo >= nr) break;
        float32x4_t acc[6][4];
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_f32(0);
        const float *bq = b + lo;
        for (long p = 0; p < k; p++) {
            float32x4_t b0 = vld1q_f32(bq + p * 64), b1 = vld1q_f32(bq + p * 64 + 4);
            float32x4_t b2 = vld1q_f32(bq + p * 64 + 8), b3 = vld1q_f32(bq + p * 64 + 12);
            for (int i = 0; i < 6; i++) {
                float av = a[i][p];
                acc[i][0] = vfmaq_n_f32(acc[i][0], b0, av);
                acc[i][1] = vfmaq_n_f32(acc[i][1], b1, av);
                acc[i][2] = vfmaq_n_f32(acc[i][2], b2, av);
                acc[i][3] = vfmaq_n_f32(acc[i][3], b3, av);
            }
        }
        int cnt = nr - lo < 16 ? nr - lo : 16;
        for (int i = 0; i < mr; i++) {
            float tmp[16];
            for (int j = 0; j < 4; j++) vst1q_f32(tmp + 4 * j, acc[i][j]);
            float *crow = c + i * ldc + lo;
            for (int j = 0; j < cnt; j++) crow[j] = ssd_epi_value(tmp[j], e, crow + j, i, lo + j);
        }
    }
}
#endif
