/* Splitting fp32 values into bf16 hi + lo for the bf16×3 GEMM (ssd_bf16x3gemm_bf16a), AVX512_BF16. */
#ifndef SSD_SPLIT_AVX512_H
#define SSD_SPLIT_AVX512_H
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

#define SSD_SPLIT_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512bf16")))

/* hi = bf16(x) and lo = bf16(x − hi) (RNE), 16 values each. */
SSD_SPLIT_TARGET static inline void ssd_split16(__m512 x, __m256i *hi, __m256i *lo) {
    *hi = (__m256i)_mm512_cvtneps_pbh(x);
    __m512 h = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(*hi), 16));
    *lo = (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(x, h));
}

/* 16 columns of two depth rows (x0 at an even depth, x1 the next) as k-pairs: the high parts'
 * 64 bytes at `hi`, the low parts' at `lo` (NULL: high parts only, a plain bf16 panel). */
SSD_SPLIT_TARGET static inline void ssd_store_split_pairs(__m512 x0, __m512 x1, uint16_t *hi, uint16_t *lo) {
    __m256i h0, l0, h1, l1;
    ssd_split16(x0, &h0, &l0);
    ssd_split16(x1, &h1, &l1);
    _mm512_storeu_si512(hi, _mm512_or_si512(_mm512_cvtepu16_epi32(h0), _mm512_slli_epi32(_mm512_cvtepu16_epi32(h1), 16)));
    if (lo) _mm512_storeu_si512(lo, _mm512_or_si512(_mm512_cvtepu16_epi32(l0), _mm512_slli_epi32(_mm512_cvtepu16_epi32(l1), 16)));
}
#endif
#endif
