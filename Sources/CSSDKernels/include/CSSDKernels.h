#ifndef CSSDKERNELS_H
#define CSSDKERNELS_H
/*
 * SIMD micro-kernels for SSDCPUBackend.
 *
 * Every hot routine exists once per instruction set (AVX-512F+FMA, AVX2+FMA, AVX512_BF16,
 * portable C, NEON on arm64), each variant compiled with `__attribute__((target(...)))` so the
 * package needs no build flags; the variant is chosen once, at load time, from the CPU's
 * features (`__builtin_cpu_supports`), and can be forced down for tests (`ssd_set_isa`).
 *
 * GEMM layout: B ("weights") is packed in panels of SSD_NR = 64 columns; panel j holds the
 * k × 64 block row-major (element (p, c) at p*64 + c), zero-padded past the last column.
 * The bf16 form holds k-pairs interleaved: element (p, c) at (p/2)*128 + c*2 + p%2, each
 * K segment zero-padded to a multiple of SSD_BF16_KALIGN (the AMX kernel reads whole 32-deep tiles). A is given as row pointers (so convolutions can read NHWC input rows in
 * place: implicit GEMM), each pointing to k contiguous floats.
 */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SSD_NR 64
#define SSD_MR 6
#define SSD_BF16_KALIGN 32

/* Instruction-set levels (ssd_isa / ssd_set_isa). */
enum {
    SSD_ISA_PORTABLE = 0,
    SSD_ISA_AVX2 = 1,
    SSD_ISA_AVX512 = 2,
    SSD_ISA_AVX512_BF16 = 3,
    SSD_ISA_AMX_BF16 = 4,    /* AVX512_BF16 plus AMX tiles for the bf16 GEMM */
    SSD_ISA_NEON = 10,
};

/* One GEMM block: C[m × n] (+)= alpha · A[m × k] · B[k × n] (+ bias + residual). */
typedef struct ssd_gemm_args {
    long m, n, k;
    const float *const *a_rows;  /* m row pointers */
    long a_offset;               /* added (in floats) to every row pointer */
    const void *b;               /* packed panels (fp32, or bf16 pairs for the bf16 GEMM) */
    long b_panel_stride;         /* elements between panels */
    float *c;
    long ldc;
    float alpha;
    int accumulate;              /* 1: add to C's current values */
    const float *bias;           /* [n] or NULL: added at the end */
    const float *residual;       /* [m × ldr] or NULL: added at the end */
    long ldr;
    void *scratch;               /* bf16 GEMM: round_up(m, 32)·(round_up(k, 32) + 2)·2 + 64 bytes (converted A) */
} ssd_gemm_args;

/* Best level this CPU supports / the level in use. */
int ssd_isa_detected(void);
int ssd_isa(void);
/* Uses `level` (clamped to what the CPU supports) from now on; returns the level in use. */
int ssd_set_isa(int level);
/* 1 when the bf16 dot-product GEMM runs natively (vdpbf16ps), 0 when it is emulated. */
int ssd_bf16_native(void);

void ssd_sgemm(const ssd_gemm_args *args);
void ssd_bf16gemm(const ssd_gemm_args *args);

/* This thread's scratch buffer `slot` (0 or 1) of at least `bytes` (64-byte aligned), kept and
 * grown across calls, freed when the thread exits; valid until the next call for the same slot
 * on this thread. NULL when it cannot be allocated. */
void *ssd_thread_scratch(int slot, size_t bytes);

/* Bytes of the per-core L2 cache (sysconf, else sysfs), 0 when unknown: picks the GEMM blocking. */
long ssd_l2_cache_bytes(void);

/* 1 when the AMX tiles run the bf16 GEMMs (level SSD_ISA_AMX_BF16 active). */
int ssd_amx_active(void);
/* dst[r·ld + j] = bf16(rows[r][j]) (RNE) for j < len, 0 for len ≤ j < padded; r < m. */
void ssd_rows_to_bf16(const float *const *rows, long m, long len, long padded, uint16_t *dst, long ld);
/* Layer norm of rows of x (`[rows, n]`) straight to bf16 rows: ssd_layer_norm_row then
 * ssd_rows_to_bf16 (zeros from n to padded), bit for bit. */
void ssd_layer_norm_to_bf16(const float *x, long rows, long n, const float *gamma, const float *beta, float eps,
                            long padded, uint16_t *dst, long ld);
/* dst[r·ld + j] = bf16(h·GELU(g)) (RNE) for j < n with h, g the two halves of row r of x
 * (`[rows, 2n]`), 0 for n ≤ j < padded: ssd_geglu then ssd_rows_to_bf16, bit for bit. */
void ssd_geglu_to_bf16(const float *x, long rows, long n, long padded, uint16_t *dst, long ld);
/* The same two as split rows (ssd_rows_to_bf16x2 of the fp32 results; `padded` is the real depth
 * padded to 32, rows 2·padded long) for the bf16×3 GEMM. */
void ssd_layer_norm_to_bf16x2(const float *x, long rows, long n, const float *gamma, const float *beta, float eps,
                              long padded, uint16_t *dst, long ld);
void ssd_geglu_to_bf16x2(const float *x, long rows, long n, long padded, uint16_t *dst, long ld);
/* The bf16 GEMM with A already bf16 rows `a` (row r at a + r·lda) instead of args->a_rows:
 * C[m × n] (+)= alpha · A · B (+ bias + residual) over the whole depth args->k, which must be a
 * multiple of 32 with B's panels that deep (A zero past the real depth). Rows up to
 * round_up(m, 32) of `a` must be readable (their values do not matter). C is used for partial sums
 * between depth passes, so neither A nor the residual may alias it. Without AMX, args->scratch needs
 * 12 · k + 64 bytes. */
void ssd_bf16gemm_bf16a(const uint16_t *a, long lda, const ssd_gemm_args *args);
/* The bf16 GEMM with A given as 16-row tiles: rows 16t…16t+15 of segment s (depth s·seg_len …
 * (s+1)·seg_len − 1) start at tiles[t·segments + s], `astride` bytes between rows; args->k =
 * segments · seg_len, seg_len a multiple of 32, and `tiles` holds 2·ceil(m / 32) · segments pointers,
 * all readable for 16 rows (rows past m do not matter). A convolution's rows read in place from a
 * bf16 image band this way. Without AMX, args->scratch needs 44 · k + 128 bytes. */
void ssd_bf16gemm_tiles(const uint16_t *const *tiles, long segments, long seg_len, long astride, const ssd_gemm_args *args);
/* Split rows for the bf16×3 GEMM: per 32 values of a row (zeros from len to padded, a multiple
 * of 32), their 32 bf16 high parts hi = bf16(x) then the 32 low parts bf16(x − hi), both RNE:
 * 2·padded values from dst + r·ld. */
void ssd_rows_to_bf16x2(const float *const *rows, long m, long len, long padded, uint16_t *dst, long ld);
/* fp32 products at bf16 speed (PyTorch's float32 matmul precision "high", "bfloat16x3"): A and B
 * both split as by ssd_rows_to_bf16x2 (depth args->k counts stored values, a multiple of 64; B as
 * bf16 k-pair panels of that depth), C (+)= alpha · (A_hi·B_hi + A_lo·B_hi + A_hi·B_lo) (+ bias +
 * residual), about 1e-5 relative to fp32. Otherwise as ssd_bf16gemm_bf16a (needs no scratch). */
void ssd_bf16x3gemm_bf16a(const uint16_t *a, long lda, const ssd_gemm_args *args);
/* One fp32 panel (k × 64) as a split panel of stored depth 2·kpad (kpad ≥ k a multiple of 32;
 * rows k ..< kpad zero). */
void ssd_pack_bf16x2_panel(const float *src, long k, long kpad, uint16_t *dst);
/* kb rows (real depth) of one split panel (`src` at a 64-value chunk) as fp32 panel rows
 * dst[kk·64 + c] = hi + lo. */
void ssd_bf16x2_pairs_to_f32(const uint16_t *src, long kb, float *dst);
/* Packs B[k × n] (element (p, c) = transposed ? src[c·ld + p] : src[p·ld + c]) into bf16 k-pair
 * panels of depth kpad (even, ≥ k; zeros past k and past column n), panel stride kpad · 64. */
void ssd_pack_bf16_pairs(const float *src, long ld, int transposed, long k, long n, long kpad, uint16_t *dst);

/* Element conversion (round to nearest even). */
void ssd_f16_to_f32(const uint16_t *src, float *dst, long n);
void ssd_bf16_to_f32(const uint16_t *src, float *dst, long n);
void ssd_f32_to_f16(const float *src, uint16_t *dst, long n);
void ssd_f32_to_bf16(const float *src, uint16_t *dst, long n);

/* Activations: kind 0 SiLU, 1 GELU (erf), 2 quick GELU, 3 ReLU, 4 tanh; in place allowed. */
enum { SSD_ACT_NONE = -1, SSD_ACT_SILU = 0, SSD_ACT_GELU = 1, SSD_ACT_QUICK_GELU = 2, SSD_ACT_RELU = 3, SSD_ACT_TANH = 4 };
void ssd_activation(const float *x, float *y, long n, int kind);
/* GEGLU: rows of x [2n] → y [n] = x[:n] · GELU(x[n:]). */
void ssd_geglu(const float *x, float *y, long rows, long n);
/* y[r, c] = act(x[r, c] · scale[c] + shift[c]) for r < rows, c < channels. */
void ssd_scale_shift_act(const float *x, float *y, long rows, long channels,
                         const float *scale, const float *shift, int act);
/* sum[c] += Σ_r x[r, c]  (sum has `channels` floats; caller zeroes). */
void ssd_channel_sum(const float *x, long rows, long channels, double *sum);
/* sq[c] += Σ_r (x[r, c] − mean[c])². */
void ssd_channel_sqdev(const float *x, long rows, long channels, const float *mean, double *sq);
/* Layer norm of one row of n. */
void ssd_layer_norm_row(const float *x, float *y, long n, const float *gamma, const float *beta, float eps);
/* Softmax of one row: the first `valid` entries normalised, the rest set to 0. */
void ssd_softmax_row(const float *x, float *y, long n, long valid);
/* y = x · scale + shift. */
void ssd_affine(const float *x, float *y, long n, float scale, float shift);

/*
 * One step of online softmax for flash attention over a block of scores.
 * s: [rows × ldS] scores (already scaled), first `cols` valid; entries with key index
 * k0 + j > q0 + i are masked when causal. Overwrites s with exp(s − m_new) (0 when masked,
 * and zero-fills columns cols..cols_padded), updates row max m and row sum l, and rescales
 * o [rows × ldo, d columns] by exp(m_old − m_new).
 */
void ssd_online_softmax(float *s, long rows, long cols, long cols_padded, long ldS,
                        float *m, float *l, float *o, long ldo, long d,
                        int causal, long q0, long k0);
/* The flash attention's last step: dst[i·ldd + j] = o[i·ldo + j] / l[i] (0 where l[i] ≤ 0) for
 * i < rows, j < d. */
void ssd_attention_normalize(const float *o, long ldo, const float *l, long rows, long d, float *dst, long ldd);
/* x[0..<n] = 0. */
void ssd_zero_floats(float *x, long n);
/* The same step for the bf16 attention: s holds unscaled scores (multiplied by `scale` here; s
 * may be overwritten), and the probabilities are written as bf16 to p [rows × ldp] (zeros from the
 * valid columns to cols_padded); l sums the rounded probabilities. */
void ssd_online_softmax_bf16(float *s, long rows, long cols, long cols_padded, long ldS, float scale,
                             float *m, float *l, float *o, long ldo, long d,
                             int causal, long q0, long k0, uint16_t *p, long ldp);

/*
 * Winograd F(4×4, 3×3) transforms for 3×3 stride-1 convolutions (NHWC, channels contiguous);
 * transformed position ξ = 6·i + j, i, j < 6.
 * Input: `tiles` 6×6 tiles side by side (tile t starts 4·t pixels right of `src`; `row_stride`
 * floats between input rows, pixels `channels` apart) → v[t·v_tile_stride + ξ·v_xi_stride + c] = (Bᵀ d B)[ξ].
 * Weight: one 64-column panel of a packed 3×3 weight (element (tap, ci, lane) at
 * g[(tap·cin + ci)·64 + lane], tap = 3·ky + kx) → u[ξ·u_xi_stride + ci·64 + lane] = (G g Gᵀ)[ξ].
 * Output: one tile, m[ξ·m_xi_stride + c] for c < channels → the top-left `rows` × `cols` (≤ 4)
 * pixels of Aᵀ m A at y (rows `y_row_stride`, pixels `y_pixel_stride` floats apart), plus bias[c]
 * and the residual at the same offsets as y (either may be NULL).
 */
void ssd_winograd_input_f43(const float *src, long row_stride, long channels, long tiles, float *v,
                            long v_tile_stride, long v_xi_stride);
void ssd_winograd_weight_f43(const float *g, long cin, float *u, long u_xi_stride);
void ssd_winograd_output_f43(const float *m, long m_xi_stride, long channels, const float *bias,
                             const float *residual, float *y, long y_row_stride, long y_pixel_stride, int rows, int cols);

/* Winograd F(2×2, 3×3) for bf16 convolutions (AVX512_BF16; the path needs AMX): input tiles from
 * `src` (4 rows `rs` floats apart, tile t starting at pixel 2t, `ch` channels innermost, ch a
 * multiple of 16) to bf16 V[ξ][t][c] at v + ξ·vxs + t·vts + c; output tile from fp32 M[ξ][c] at
 * m + ξ·mxs + c: Y (rows × cols of its 2 × 2, y + i·ys + j·cs + c) = Aᵀ M A + bias + residual (laid
 * out like y; either may be NULL). */
void ssd_wino23_input_bf16(const float *src, long rs, long ch, long tiles, uint16_t *v, long vts, long vxs);
void ssd_wino23_output(const float *m, long mxs, long ch, const float *bias, const float *residual, float *y,
                       long ys, long cs, int rows, int cols);
/* The input transform for fp32 matmul precision "high" (bf16×3 tile GEMMs): V[ξ][t] as a split
 * row (per 32 channels their bf16 high parts, then the low parts; ch a multiple of 32). */
void ssd_wino23_input_bf16x2(const float *src, long rs, long ch, long tiles, uint16_t *v, long vts, long vxs);
/* The transformed weight U[ξ] = G g Gᵀ of fp32 filter panels `g` (element ((ky·3 + kx)·cin + ci)·64
 * + l, as ssd_winograd_weight_f43 reads) as bf16 k-pair panels of depth cin, or with `split` as split
 * panels of depth 2·cin (cin a multiple of 32), for input channels ci0 ..< ci1 (even) of each ξ at
 * u + ξ·uxs. */
void ssd_wino23_weight(const float *g, long cin, long ci0, long ci1, int split, uint16_t *u, long uxs);

#ifdef __cplusplus
}
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif
/* Peak-throughput probes for the benchmark: `iterations` rounds of independent FMAs
 * (fp32) or bf16 dot products (AMX tdpbf16ps, else vdpbf16ps) at the active level; return the
 * floating-point operations done. */
double ssd_peak_probe_f32(long iterations);
double ssd_peak_probe_bf16(long iterations);
#ifdef __cplusplus
}
#endif
