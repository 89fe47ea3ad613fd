/* AMX-BF16 GEMM (Sapphire Rapids and later): 32 × 32 output blocks in four 16 × 16 fp32 tile
 * accumulators, A as bf16 rows or as 16-row tiles read in place (a convolution's input band), B
 * straight from the bf16 pair panels (a 16-column slice of a k-pair row is exactly one 64-byte tile
 * row; stride 256 bytes). fp32 accumulation. One loop nest (`amx_gemm`) serves the three entries. */
#if defined(__x86_64__)
#include "internal.h"
#include "split_avx512.h"
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

int ssd_amx_request(void) {
#ifdef SYS_arch_prctl
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}

typedef struct {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} ssd_tilecfg;

#define SSD_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,fma")))

SSD_AMX static void store_block(const ssd_gemm_args *g, const float *tmp, long i0, long col, int rows, int cols) {
    __m512 valpha = _mm512_set1_ps(g->alpha);
    for (int i = 0; i < rows; i++) {
        float *crow = g->c + (i0 + i) * g->ldc + col;
        for (int j = 0; j < cols; j += 16) {
            int cnt = cols - j < 16 ? cols - j : 16;
            __mmask16 mk = (__mmask16)(cnt == 16 ? 0xFFFF : ((1u << cnt) - 1));
            __m512 v = _mm512_mul_ps(_mm512_loadu_ps(tmp + i * 32 + j), valpha);
            if (g->accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, crow + j));
            if (g->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, g->bias + col + j));
            if (g->residual) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, g->residual + (i0 + i) * g->ldr + col + j));
            _mm512_mask_storeu_ps(crow + j, mk, v);
        }
    }
}

/* Where the rows of A come from: dense bf16 rows (`tiles` NULL: row r at base + r·lda), or 16-row
 * tiles given by pointers (tile t of segment s at tiles[t·segments + s], segLen deep, `astride`
 * bytes between its rows; a convolution's rows read straight from a bf16 image band). */
typedef struct {
    const uint16_t *base;
    long lda;
    const uint16_t *const *tiles;
    long segments, segLen, astride;
} amx_rows;

/* Start of tile `t` (rows 16t…16t+15) at depth k, and how much depth runs on contiguously. */
SSD_AMX static inline const uint16_t *tile_at(const amx_rows *A, long t, long k, long *run) {
    if (!A->tiles) { *run = 1L << 40; return A->base + t * 16 * A->lda + k; }
    long s = k / A->segLen;
    *run = (s + 1) * A->segLen - k;
    return A->tiles[t * A->segments + s] + (k - s * A->segLen);
}

/* Accumulators 0–3 (a 32 × 32 block of C) from zero or from `acc` (row stride accStride bytes). */
SSD_AMX static inline void acc_begin(const float *acc, long accStride, int zero) {
    if (zero) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    } else {
        _tile_loadd(0, acc, accStride);
        _tile_loadd(1, (const char *)acc + 64, accStride);
        _tile_loadd(2, (const char *)acc + 16 * accStride, accStride);
        _tile_loadd(3, (const char *)acc + 16 * accStride + 64, accStride);
    }
}

/* Adds A tiles a0/a1 (astride bytes between rows) × the B slice b0 over `kb` of depth; B's tiles
 * with the streaming hint (TILELOADDT1), so that they do not evict A's tiles from L1. */
SSD_AMX static inline void acc_run(const uint16_t *a0, const uint16_t *a1, long astride, const uint16_t *b0, long kb) {
    const uint16_t *b1 = b0 + 32;
    for (long p = 0; p < kb; p += 32) {
        _tile_loadd(4, a0 + p, astride);
        _tile_stream_loadd(6, b0 + p * 64, 256);
        _tile_dpbf16ps(0, 4, 6);
        _tile_stream_loadd(7, b1 + p * 64, 256);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + p, astride);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
}

/* The same for split operands (`ssd_bf16x3gemm_bf16a`): each 32 deep of the real depth is stored as
 * 64, its bf16 high parts then its low parts (x = hi + lo), in A and B alike; three products per
 * chunk, A_hi·B_hi + A_lo·B_hi + A_hi·B_lo (A_lo·B_lo, ~2⁻¹⁶ relative, is left out: PyTorch's
 * "bfloat16x3"). Each B tile is loaded once; the A tiles, in L1, twice for the high part. */
SSD_AMX static inline void acc_run_x3(const uint16_t *a0, const uint16_t *a1, long astride, const uint16_t *b0, long kb) {
    const uint16_t *b1 = b0 + 32;
    for (long p = 0; p < kb; p += 64) {
        _tile_loadd(4, a0 + p, astride);
        _tile_stream_loadd(6, b0 + p * 64, 256);
        _tile_dpbf16ps(0, 4, 6);
        _tile_stream_loadd(7, b1 + p * 64, 256);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + p, astride);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        _tile_loadd(4, a0 + p + 32, astride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + p + 32, astride);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        _tile_loadd(4, a0 + p, astride);
        _tile_stream_loadd(6, b0 + (p + 32) * 64, 256);
        _tile_dpbf16ps(0, 4, 6);
        _tile_stream_loadd(7, b1 + (p + 32) * 64, 256);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + p, astride);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
}

/* The block back to `acc`, or through the epilogue into C when `finish` is set. */
SSD_AMX static inline void acc_end(const ssd_gemm_args *g, float *acc, long accStride, int finish, long i0, long col,
                                   int rows, int cols) {
    if (!finish) {
        _tile_stored(0, acc, accStride);
        _tile_stored(1, (char *)acc + 64, accStride);
        _tile_stored(2, (char *)acc + 16 * accStride, accStride);
        _tile_stored(3, (char *)acc + 16 * accStride + 64, accStride);
    } else {
        float tmp[32 * 32] __attribute__((aligned(64)));
        _tile_stored(0, tmp, 128);
        _tile_stored(1, tmp + 16, 128);
        _tile_stored(2, tmp + 16 * 32, 128);
        _tile_stored(3, tmp + 16 * 32 + 16, 128);
        store_block(g, tmp, i0, col, rows, cols);
    }
}

/* C[m × n] (+)= alpha · A[m × k] · B + … with A's rows as `A` says (k a multiple of 32; rows up to
 * round_up(m, 32) readable). Each 32 × 32 block of C lives in the four accumulator tiles over one
 * depth pass and its partial sums in C itself between passes (in a side buffer for edge blocks).
 * With a plain epilogue (alpha 1, no bias or residual) whole blocks are loaded into and stored
 * straight from the tiles, accumulation included; otherwise the epilogue runs once, after the last
 * pass, and an accumulating GEMM takes the whole depth in one pass. Since partial sums go through C,
 * neither A nor the residual may alias C.
 *
 * Blocking (measured on one core of this Xeon, where the tile loop itself runs at the TMUL's peak
 * with its operands in L1, so the blocking decides where A and B come from): columns in groups of
 * 16 slices (512 columns) outermost, so that a group's partial sums stay in L2 between passes;
 * depth passes of at most 640, so that the 32 rows × pass of A one row slice multiplies (40 KB)
 * stay in L1 while the group's slices of B stream past them (row slices outer, column slices
 * inner). 1024 × 320 × 640: 1.0 → 1.35 TFLOP/s against the first kernel, 1024 × 320 × 2880 (a
 * convolution's block): 0.55 → 1.1. Calls of up to 256 rows took the other order (column slices
 * outer, passes up to 2048 deep, B prefetched into L2) until the sixth session: in one process,
 * alternating whole UNet iterations (`ssd-bench unet --alternate`, 512², bf16), this order alone
 * was faster in three runs of 16–30 rounds (median ratios 0.97, 0.93, 0.92; 21 of 30 rounds), with
 * harness gains up to 1.3× on the 256-row tasks when the weights are in cache. */
SSD_AMX static void amx_gemm(const amx_rows *A, const ssd_gemm_args *g, int x3) {
    ssd_tilecfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
    const uint16_t *b = (const uint16_t *)g->b;
    long ldc4 = g->ldc * 4, k = g->k;
    long rslices = (g->m + 31) / 32, cslices = (g->n + 31) / 32;
    long group = 16, kmax = 640;
    int plain = g->alpha == 1.0f && !g->bias && !g->residual;
    long kc = (g->accumulate && !plain) || k <= kmax ? k : kmax;
    if (kc < k) {  /* equal passes, multiples of 32 */
        long passes = (k + kc - 1) / kc;
        long unit = x3 ? 64 : 32;  /* a split chunk stays in one pass */
        kc = ((k + passes - 1) / passes + unit - 1) / unit * unit;
    }
    /* Partial sums of the edge blocks (last row slice, last column slice) between passes. */
    float *edge = NULL;
    if (kc < k && ((g->m % 32) || (g->n % 32))) {
        edge = (float *)aligned_alloc(64, (size_t)(cslices + rslices) * 32 * 32 * 4);
        if (!edge) kc = k;  /* no side buffer: one pass over the whole depth */
    }
    for (long cg = 0; cg < cslices; cg += group) {
        long cgEnd = cg + group < cslices ? cg + group : cslices;
        for (long k0 = 0; k0 < k; k0 += kc) {
            long kb = k - k0 < kc ? k - k0 : kc;
            int first = k0 == 0, last = k0 + kb >= k;
            for (long rs = 0; rs < rslices; rs++) {
                for (long cs = cg; cs < cgEnd; cs++) {
                    long i0 = rs * 32, col = cs * 32;
                    int rows = (int)(g->m - i0 < 32 ? g->m - i0 : 32);
                    int cols = (int)(g->n - col < 32 ? g->n - col : 32);
                    int full = rows == 32 && cols == 32;
                    /* Where this block's partial sums live between passes. */
                    float *acc = full ? g->c + i0 * g->ldc + col : edge + (rows < 32 ? cs : cslices + rs) * 1024;
                    long accStride = full ? ldc4 : 128;
                    const uint16_t *b0 = b + (col / SSD_NR) * g->b_panel_stride + (col % SSD_NR) * 2 + k0 * SSD_NR;
                    acc_begin(acc, accStride, first && !(full && plain && g->accumulate));
                    for (long kk = k0; kk < k0 + kb;) {
                        long run0, run1;  /* equal: both tiles share the segment boundaries */
                        const uint16_t *a0 = tile_at(A, 2 * rs, kk, &run0), *a1 = tile_at(A, 2 * rs + 1, kk, &run1);
                        long run = k0 + kb - kk;
                        if (run0 < run) run = run0;
                        if (x3) acc_run_x3(a0, a1, A->astride, b0 + (kk - k0) * SSD_NR, run);
                        else acc_run(a0, a1, A->astride, b0 + (kk - k0) * SSD_NR, run);
                        kk += run;
                    }
                    acc_end(g, acc, accStride, last && !(plain && full), i0, col, rows, cols);
                }
            }
        }
    }
    free(edge);
}

SSD_AMX void ssd_bf16gemm_amx_bf16a(const uint16_t *a, long lda, const ssd_gemm_args *g) {
    amx_rows A = {a, lda, NULL, 1, g->k, lda * 2};
    amx_gemm(&A, g, 0);
}

/* fp32 rows (args->a_rows): converted to bf16 rows in the scratch first. Needs panels whose depth is
 * padded with zeros to a multiple of 32 past `k`, and scratch for round_up(m, 32) × round_up(k, 32)
 * bf16 + 64 bytes. */
SSD_AMX void ssd_bf16gemm_amx(const ssd_gemm_args *g) {
    long kpad = (g->k + 31) / 32 * 32, mpad = (g->m + 31) / 32 * 32;
    uint16_t *a = (uint16_t *)(((uintptr_t)g->scratch + 63) & ~(uintptr_t)63);
    for (long r = 0; r < g->m; r++) {
        const float *row = g->a_rows[r] + g->a_offset;
        ssd_rows_to_bf16_avx512(&row, 1, g->k, kpad, a + r * kpad, kpad);
    }
    memset(a + g->m * kpad, 0, (size_t)((mpad - g->m) * kpad) * 2);
    ssd_gemm_args padded = *g;
    padded.k = kpad;
    amx_rows A = {a, kpad, NULL, 1, kpad, kpad * 2};
    amx_gemm(&A, &padded, 0);
}

SSD_AMX void ssd_bf16gemm_amx_tiles(const uint16_t *const *tiles, long segments, long seg_len, long astride,
                                    const ssd_gemm_args *g) {
    amx_rows A = {NULL, 0, tiles, segments, seg_len, astride};
    amx_gemm(&A, g, 0);
}

SSD_AMX void ssd_bf16x3gemm_amx_bf16a(const uint16_t *a, long lda, const ssd_gemm_args *g) {
    amx_rows A = {a, lda, NULL, 1, g->k, lda * 2};
    amx_gemm(&A, g, 1);
}

/* fp32 rows → split bf16 rows: per 32 values, 32 high parts bf16(x) then 32 low parts
 * bf16(x − hi) (both RNE); zeros from len to padded (a multiple of 32); 2·padded values a row. */
__attribute__((target("avx512f,avx512vl,avx512bw,avx512bf16"))) void ssd_rows_to_bf16x2_avx512(const float *const *rows, long m, long len, long padded, uint16_t *dst, long ld) {
    for (long r = 0; r < m; r++) {
        const float *s = rows[r];
        uint16_t *d = dst + r * ld;
        for (long p = 0; p < padded; p += 32) {
            long left = len - p;
            __mmask16 m0 = (__mmask16)(left >= 16 ? 0xFFFF : left <= 0 ? 0 : ((1u << left) - 1));
            long left1 = left - 16;
            __mmask16 m1 = (__mmask16)(left1 >= 16 ? 0xFFFF : left1 <= 0 ? 0 : ((1u << left1) - 1));
            __m512 x0 = _mm512_maskz_loadu_ps(m0, s + p), x1 = _mm512_maskz_loadu_ps(m1, s + p + 16);
            __m512i hi = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
            __m512 h0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hi)), 16));
            __m512 h1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hi, 1)), 16));
            __m512i lo = (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(x1, h1), _mm512_sub_ps(x0, h0));
            _mm512_storeu_si512(d + 2 * p, hi);
            _mm512_storeu_si512(d + 2 * p + 32, lo);
        }
    }
}

/* ssd_pack_bf16x2_panel: rows kk and kk + 1 (one k-pair of a chunk) 16 columns at a time. */
__attribute__((target("avx512f,avx512vl,avx512bw,avx512bf16"))) void ssd_pack_bf16x2_panel_avx512(const float *src, long k, long kpad, uint16_t *dst) {
    for (long kk = 0; kk < kpad; kk += 2) {
        long d = (kk / 32) * 64 + kk % 32;
        for (int l = 0; l < SSD_NR; l += 16) {
            __m512 x0 = kk < k ? _mm512_loadu_ps(src + kk * SSD_NR + l) : _mm512_setzero_ps();
            __m512 x1 = kk + 1 < k ? _mm512_loadu_ps(src + (kk + 1) * SSD_NR + l) : _mm512_setzero_ps();
            ssd_store_split_pairs(x0, x1, dst + (d / 2) * 2 * SSD_NR + l * 2, dst + ((d + 32) / 2) * 2 * SSD_NR + l * 2);
        }
    }
}

/* fp32 rows → bf16 rows (RNE), zero padded from len to padded (AVX512_BF16 only, no AMX). */
__attribute__((target("avx512f,avx512vl,avx512bw,avx512bf16"))) void ssd_rows_to_bf16_avx512(const float *const *rows, long m, long len, long padded, uint16_t *dst, long ld) {
    for (long r = 0; r < m; r++) {
        const float *s = rows[r];
        uint16_t *d = dst + r * ld;
        for (long p = 0; p < padded; p += 32) {
            long left = len - p;
            __mmask16 m0 = (__mmask16)(left >= 16 ? 0xFFFF : left <= 0 ? 0 : ((1u << left) - 1));
            long left1 = left - 16;
            __mmask16 m1 = (__mmask16)(left1 >= 16 ? 0xFFFF : left1 <= 0 ? 0 : ((1u << left1) - 1));
            __m512i v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, s + p + 16), _mm512_maskz_loadu_ps(m0, s + p));
            long cnt = padded - p;
            if (cnt >= 32) _mm512_storeu_si512(d + p, v);
            else _mm512_mask_storeu_epi16(d + p, (__mmask32)((1u << cnt) - 1), v);
        }
    }
}
#endif
