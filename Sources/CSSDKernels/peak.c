/* Peak-throughput probes (benchmark only): 24 independent accumulator chains. */
#include "internal.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx512f,fma")))
static double probe_avx512(long it) {
    __m512 acc[24];
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps((float)i * 1e-3f);
    __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-4f);
    for (long n = 0; n < it; n++)
        for (int i = 0; i < 24; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, acc[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)it * 24 * 32;
}

__attribute__((target("avx2,fma")))
static double probe_avx2(long it) {
    __m256 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i * 1e-3f);
    __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-4f);
    for (long n = 0; n < it; n++)
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    float out[8];
    __m256 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, acc[i]);
    _mm256_storeu_ps(out, s);
    volatile float sink = out[0];
    (void)sink;
    return (double)it * 12 * 16;
}

__attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw")))
static double probe_bf16(long it) {
    __m512 acc[24];
    for (int i = 0; i < 24; i++) acc[i] = _mm512_setzero_ps();
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F803F80), b = (__m512bh)_mm512_set1_epi32(0x38003800);
    for (long n = 0; n < it; n++)
        for (int i = 0; i < 24; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, acc[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)it * 24 * 64;
}

typedef struct { uint8_t palette_id, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } probe_tilecfg;

__attribute__((target("amx-tile,amx-bf16")))
static double probe_amx(long it) {
    probe_tilecfg cfg = {0};
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
    static uint16_t zeros[16 * 32];
    _tile_loadd(4, zeros, 64);
    _tile_loadd(5, zeros, 64);
    _tile_loadd(6, zeros, 64);
    _tile_loadd(7, zeros, 64);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    for (long n = 0; n < it; n++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float out[256];
    _tile_stored(0, out, 64);
    volatile float sink = out[0];
    (void)sink;
    return (double)it * 4 * 16 * 16 * 32 * 2;
}
#endif

double ssd_peak_probe_f32(long it) {
#if defined(__x86_64__) || defined(__i386__)
    if (ssd_isa() >= SSD_ISA_AVX512) return probe_avx512(it);
    if (ssd_isa() >= SSD_ISA_AVX2) return probe_avx2(it);
#endif
    volatile float x = 1.0f;
    for (long n = 0; n < it; n++) x = x * 0.999f + 1e-4f;
    return (double)it * 2;
}

double ssd_peak_probe_bf16(long it) {
#if defined(__x86_64__) || defined(__i386__)
    if (ssd_isa() >= SSD_ISA_AMX_BF16) return probe_amx(it / 16);
    if (ssd_isa() >= SSD_ISA_AVX512_BF16) return probe_bf16(it);
#endif
    return 0;
}
