/* Winograd F(4×4, 3×3) transforms (Lavin & Gray, points 0, ±1, ±2, ∞): portable C, and run-time
 * dispatch to the AVX2 and AVX-512 intrinsics (winograd_avx2.c, winograd_avx512.c).
 *
 *   Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A   for a 6×6 input tile d and a 3×3 filter g;
 *   position ξ = 6·i + j of the 6×6 transformed domain.
 * Channels are the innermost (contiguous) dimension everywhere, so each transform is a set of
 * independent vectors across channels. */
#include "internal.h"

#define WI_INLINE static inline __attribute__((always_inline))

/* Bᵀ applied to six values (one column or row of a tile). */
#define WI_BT6(D, O)                                                    \
    do {                                                                \
        float a_ = D[4] - 4.0f * D[2], b_ = D[3] - 4.0f * D[1];         \
        float c_ = D[4] - D[2], e_ = 2.0f * (D[3] - D[1]);              \
        O[0] = 4.0f * D[0] - 5.0f * D[2] + D[4];                        \
        O[1] = a_ + b_;                                                 \
        O[2] = a_ - b_;                                                 \
        O[3] = c_ + e_;                                                 \
        O[4] = c_ - e_;                                                 \
        O[5] = 4.0f * D[1] - 5.0f * D[3] + D[5];                        \
    } while (0)

/* G applied to three values. */
#define WI_G3(G, O)                                                     \
    do {                                                                \
        float s_ = G[0] + G[2], p_ = G[0] * (1.0f / 24) + G[2] * (1.0f / 6), q_ = G[1] * (1.0f / 12); \
        O[0] = G[0] * 0.25f;                                            \
        O[1] = -(s_ + G[1]) * (1.0f / 6);                               \
        O[2] = -(s_ - G[1]) * (1.0f / 6);                               \
        O[3] = p_ + q_;                                                 \
        O[4] = p_ - q_;                                                 \
        O[5] = G[2];                                                    \
    } while (0)

/* Aᵀ applied to six values. */
#define WI_AT6(M, O)                                                    \
    do {                                                                \
        float s12_ = M[1] + M[2], d12_ = M[1] - M[2], s34_ = M[3] + M[4], d34_ = M[3] - M[4]; \
        O[0] = M[0] + s12_ + s34_;                                      \
        O[1] = d12_ + 2.0f * d34_;                                      \
        O[2] = s12_ + 4.0f * s34_;                                      \
        O[3] = d12_ + 8.0f * d34_ + M[5];                               \
    } while (0)

WI_INLINE void wi_input(const float *src, long rs, long ch, long tiles, float *v, long vts, long vxs) {
    for (long t = 0; t < tiles; t++) {
        const float *s = src + 4 * t * ch;
        float *vt = v + t * vts;
        for (long c = 0; c < ch; c++) {
            float tmp[6][6];
            for (int j = 0; j < 6; j++) {
                float d[6], o[6];
                for (int r = 0; r < 6; r++) d[r] = s[r * rs + j * ch + c];
                WI_BT6(d, o);
                for (int i = 0; i < 6; i++) tmp[i][j] = o[i];
            }
            for (int i = 0; i < 6; i++) {
                float o[6];
                WI_BT6(tmp[i], o);
                for (int j = 0; j < 6; j++) vt[(i * 6 + j) * vxs + c] = o[j];
            }
        }
    }
}

WI_INLINE void wi_weight(const float *g, long cin, float *u, long uxs) {
    for (long ci = 0; ci < cin; ci++) {
        for (int lane = 0; lane < SSD_NR; lane++) {
            float tmp[6][3];
            for (int kx = 0; kx < 3; kx++) {
                float col[3], o[6];
                for (int ky = 0; ky < 3; ky++) col[ky] = g[((ky * 3 + kx) * cin + ci) * SSD_NR + lane];
                WI_G3(col, o);
                for (int i = 0; i < 6; i++) tmp[i][kx] = o[i];
            }
            for (int i = 0; i < 6; i++) {
                float o[6];
                WI_G3(tmp[i], o);
                for (int j = 0; j < 6; j++) u[(i * 6 + j) * uxs + ci * SSD_NR + lane] = o[j];
            }
        }
    }
}

WI_INLINE void wi_output(const float *m, long mxs, long ch, const float *bias, const float *residual,
                         float *y, long yrs, long yps, int rows, int cols) {
    for (long c = 0; c < ch; c++) {
        float tmp[4][6];
        for (int j = 0; j < 6; j++) {
            float col[6], o[4];
            for (int i = 0; i < 6; i++) col[i] = m[(i * 6 + j) * mxs + c];
            WI_AT6(col, o);
            for (int a = 0; a < 4; a++) tmp[a][j] = o[a];
        }
        float b = bias ? bias[c] : 0.0f;
        for (int a = 0; a < rows; a++) {
            float o[4];
            WI_AT6(tmp[a], o);
            for (int x = 0; x < cols; x++) {
                float val = o[x] + b;
                if (residual) val += residual[a * yrs + x * yps + c];
                y[a * yrs + x * yps + c] = val;
            }
        }
    }
}

static void wi_input_portable(const float *src, long rs, long ch, long tiles, float *v, long vts, long vxs) {
    wi_input(src, rs, ch, tiles, v, vts, vxs);
}
static void wi_weight_portable(const float *g, long cin, float *u, long uxs) { wi_weight(g, cin, u, uxs); }
static void wi_output_portable(const float *m, long mxs, long ch, const float *bias, const float *residual,
                               float *y, long yrs, long yps, int rows, int cols) {
    wi_output(m, mxs, ch, bias, residual, y, yrs, yps, rows, cols);
}

#if defined(__x86_64__) || defined(__i386__)
#define WI_LEVEL() (ssd_isa() == SSD_ISA_NEON ? SSD_ISA_PORTABLE : ssd_isa())
#endif

void ssd_winograd_input_f43(const float *src, long row_stride, long channels, long tiles, float *v,
                            long v_tile_stride, long v_xi_stride) {
#if defined(__x86_64__) || defined(__i386__)
    int level = WI_LEVEL();
    if (level >= SSD_ISA_AVX512) { ssd_wino_input_f43_avx512(src, row_stride, channels, tiles, v, v_tile_stride, v_xi_stride); return; }
    if (level >= SSD_ISA_AVX2) { ssd_wino_input_f43_avx2(src, row_stride, channels, tiles, v, v_tile_stride, v_xi_stride); return; }
#endif
    wi_input_portable(src, row_stride, channels, tiles, v, v_tile_stride, v_xi_stride);
}

void ssd_winograd_weight_f43(const float *g, long cin, float *u, long u_xi_stride) {
#if defined(__x86_64__) || defined(__i386__)
    int level = WI_LEVEL();
    if (level >= SSD_ISA_AVX512) { ssd_wino_weight_f43_avx512(g, cin, u, u_xi_stride); return; }
    if (level >= SSD_ISA_AVX2) { ssd_wino_weight_f43_avx2(g, cin, u, u_xi_stride); return; }
#endif
    wi_weight_portable(g, cin, u, u_xi_stride);
}

void ssd_winograd_output_f43(const float *m, long m_xi_stride, long channels, const float *bias,
                             const float *residual, float *y, long y_row_stride, long y_pixel_stride, int rows, int cols) {
#if defined(__x86_64__) || defined(__i386__)
    int level = WI_LEVEL();
    if (level >= SSD_ISA_AVX512) { ssd_wino_output_f43_avx512(m, m_xi_stride, channels, bias, residual, y, y_row_stride, y_pixel_stride, rows, cols); return; }
    if (level >= SSD_ISA_AVX2) { ssd_wino_output_f43_avx2(m, m_xi_stride, channels, bias, residual, y, y_row_stride, y_pixel_stride, rows, cols); return; }
#endif
    wi_output_portable(m, m_xi_stride, channels, bias, residual, y, y_row_stride, y_pixel_stride, rows, cols);
}
