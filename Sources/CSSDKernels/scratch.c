/* Per-thread scratch buffers that grow and are kept for the thread's life (freed at its exit):
 * the bf16 copies of A in the AMX GEMM and the packed attention operands come in many sizes per
 * UNet call, which would otherwise churn the backend's pool of tensor buffers (and page-fault). */
#include "internal.h"
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <unistd.h>

#define SSD_SCRATCH_SLOTS 2

typedef struct {
    void *p[SSD_SCRATCH_SLOTS];
    size_t n[SSD_SCRATCH_SLOTS];
} scratch_slots;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_destroy(void *v) {
    scratch_slots *s = (scratch_slots *)v;
    for (int i = 0; i < SSD_SCRATCH_SLOTS; i++) free(s->p[i]);
    free(s);
}

static void scratch_make_key(void) { pthread_key_create(&scratch_key, scratch_destroy); }

void *ssd_thread_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= SSD_SCRATCH_SLOTS) return NULL;
    pthread_once(&scratch_once, scratch_make_key);
    scratch_slots *s = (scratch_slots *)pthread_getspecific(scratch_key);
    if (!s) {
        s = (scratch_slots *)calloc(1, sizeof(*s));
        if (!s || pthread_setspecific(scratch_key, s) != 0) { free(s); return NULL; }
    }
    if (s->n[slot] < bytes) {
        free(s->p[slot]);
        size_t size = (bytes + 4095) / 4096 * 4096;
        s->p[slot] = aligned_alloc(64, size);
        s->n[slot] = s->p[slot] ? size : 0;
    }
    return s->p[slot];
}

long ssd_l2_cache_bytes(void) {
    long bytes = 0;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    if (bytes > 0) return bytes;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index2/size", "r");
    if (!f) return 0;
    long kib = 0;
    char unit = 'K';
    if (fscanf(f, "%ld%c", &kib, &unit) < 1) kib = 0;
    fclose(f);
    return unit == 'M' ? kib << 20 : kib << 10;
}
