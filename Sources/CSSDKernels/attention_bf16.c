/* Packing of attention operands into the bf16 k-pair panels the bf16 GEMMs read (see
 * CSSDKernels.h): K as Kᵀ (depth = head width) and V (depth = keys), per (batch, head). */
#include "internal.h"
#include <string.h>

static inline uint16_t bf16_rne(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1)) >> 16);
}

static void pack_portable(const float *src, long ld, int transposed, long k, long n, long kpad, uint16_t *dst) {
    long panels = (n + SSD_NR - 1) / SSD_NR;
    for (long jp = 0; jp < panels; jp++) {
        uint16_t *panel = dst + jp * kpad * SSD_NR;
        for (long p = 0; p < kpad; p++) {
            for (long cc = 0; cc < SSD_NR; cc++) {
                long c = jp * SSD_NR + cc;
                float v = 0;
                if (p < k && c < n) v = transposed ? src[c * ld + p] : src[p * ld + c];
                panel[(p / 2) * 2 * SSD_NR + cc * 2 + (p % 2)] = bf16_rne(v);
            }
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define SSD_BF16CVT __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16")))

SSD_BF16CVT static inline __mmask16 mask16(long left) {
    return (__mmask16)(left >= 16 ? 0xFFFF : left <= 0 ? 0 : ((1u << left) - 1));
}

SSD_BF16CVT static void pack_avx512(const float *src, long ld, int transposed, long k, long n, long kpad, uint16_t *dst) {
    long panels = (n + SSD_NR - 1) / SSD_NR;
    if (transposed) {
        /* Pair (p, p+1) of column c is src[c][p..p+1]: a converted row of src is a run of
         * k-pairs, scattered 64 pairs apart. */
        const __m512i stride = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                  _mm512_set1_epi32(SSD_NR));
        for (long jp = 0; jp < panels; jp++) {
            uint32_t *panel = (uint32_t *)(dst + jp * kpad * SSD_NR);
            for (long cc = 0; cc < SSD_NR; cc++) {
                long c = jp * SSD_NR + cc;
                const float *row = src + c * ld;
                for (long p = 0; p < kpad; p += 32) {
                    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
                    if (c < n) {
                        lo = _mm512_maskz_loadu_ps(mask16(k - p), row + p);
                        hi = _mm512_maskz_loadu_ps(mask16(k - p - 16), row + p + 16);
                    }
                    __m512i v = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
                    __mmask16 keep = mask16((kpad - p) / 2);
                    _mm512_mask_i32scatter_epi32(panel + (p / 2) * SSD_NR + cc, keep, stride, v, 4);
                }
            }
        }
    } else {
        /* Rows p and p+1 interleaved 16-bit-wise: 16 columns make one 64-byte run. */
        const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                               23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        for (long jp = 0; jp < panels; jp++) {
            uint16_t *panel = dst + jp * kpad * SSD_NR;
            for (long p = 0; p < kpad; p += 2) {
                for (long cc = 0; cc < SSD_NR; cc += 16) {
                    long c = jp * SSD_NR + cc;
                    __mmask16 mk = mask16(n - c);
                    __m512 lo = p < k ? _mm512_maskz_loadu_ps(mk, src + p * ld + c) : _mm512_setzero_ps();
                    __m512 hi = p + 1 < k ? _mm512_maskz_loadu_ps(mk, src + (p + 1) * ld + c) : _mm512_setzero_ps();
                    __m512i v = _mm512_permutexvar_epi16(inter, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                    _mm512_storeu_si512(panel + (p / 2) * 2 * SSD_NR + cc * 2, v);
                }
            }
        }
    }
}
#endif

void ssd_pack_bf16_pairs(const float *src, long ld, int transposed, long k, long n, long kpad, uint16_t *dst) {
#if defined(__x86_64__)
    if (ssd_isa() >= SSD_ISA_AVX512_BF16) { pack_avx512(src, ld, transposed, k, n, kpad, dst); return; }
#endif
    pack_portable(src, ld, transposed, k, n, kpad, dst);
}
