/* CPU emulator of the CUDA built-ins the NVRTC kernel sources use (Sources/SSDCUDABackend/Kernels),
 * for the host C++ compiler with -DSSD_EMULATION: every CUDA thread of a block is a ucontext fiber,
 * scheduled cooperatively on one OS thread; __syncthreads, __shfl_xor_sync and the warp-wide
 * tensor-core instructions (ldmatrix, mma.sync.m16n8k16, with the fragment layouts of the PTX ISA)
 * are barriers over the block or the warp with an exchange area; cp.async copies at once; __shared__
 * variables are function statics (blocks run one at a time, launches must not overlap).
 * Used by Tests/SSDCUDABackendTests/KernelEmulator.swift and by the emulated CUDA driver
 * (Scripts/null-cuda/emulated.c). emu::launch returns 0, or -2 on a barrier deadlock. */
#ifndef SSD_CUDA_EMULATOR_H
#define SSD_CUDA_EMULATOR_H
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <vector>
#include <utility>
#include <type_traits>
#include <cstdio>
#include <ucontext.h>
#include <sys/mman.h>

#define __device__ inline
#define __forceinline__
#define __global__
#define __launch_bounds__(n)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };

namespace emu {
#if defined(__x86_64__)
// A fiber switch without the signal-mask system call of swapcontext: callee-saved registers on the
// old stack, stack pointers exchanged (System V x86-64).
extern "C" void ssd_emu_switch(void **save, void *next);
asm(".text\n.globl ssd_emu_switch\n.type ssd_emu_switch,@function\nssd_emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n  ret\n");
#define SSD_EMU_FAST_SWITCH 1
#endif
struct Fiber { ucontext_t context; void *sp; uint3 index; int linear; bool finished; char *stack; size_t stackSize; int bank; };
struct Block {
    std::vector<Fiber> fibers;
    ucontext_t scheduler;
    void *schedulerSp = nullptr;
    int current = 0, live = 0, arrived = 0;
    unsigned generation = 0;
    long progress = 0;
    std::vector<int> warpLive, warpArrived;
    std::vector<unsigned> warpGeneration;
    std::vector<uint64_t> slots;  // [warp][lane][8] exchange words
    void (*body)(void *) = nullptr;
    void *argument = nullptr;
    // Barrier and warp-collective calls so far; a launch whose first block made none runs its other
    // blocks' threads as plain calls, one after another (`direct`), which must then make none either.
    long barrierCalls = 0;
    bool direct = false;
};
static Block *block = nullptr;
static uint3 blockIndex, blockDimension, gridDimension;
static uintptr_t sharedHigh = 0;

inline Fiber &me() { return block->fibers[block->current]; }
#ifdef SSD_EMU_FAST_SWITCH
inline void yield() { ssd_emu_switch(&me().sp, block->schedulerSp); }
#else
inline void yield() { swapcontext(&me().context, &block->scheduler); }
#endif
inline void release_block() { block->arrived = 0; block->generation++; }
inline void no_barriers_expected() {
    if (block->direct) {
        fprintf(stderr, "kernel emulator: a barrier or warp collective in a block after a first block without any\n");
        abort();
    }
    block->barrierCalls++;
}
inline void sync_block() {
    no_barriers_expected();
    unsigned g = block->generation;
    block->progress++;
    if (++block->arrived == block->live) release_block(); else while (block->generation == g) yield();
}
inline void sync_warp() {
    no_barriers_expected();
    int w = me().linear >> 5;
    unsigned g = block->warpGeneration[w];
    block->progress++;
    if (++block->warpArrived[w] == block->warpLive[w]) { block->warpArrived[w] = 0; block->warpGeneration[w]++; }
    else while (block->warpGeneration[w] == g) yield();
}
// Warp exchange words, in two banks used by alternate collectives: a lane that finished reading one
// collective's bank and went on can only write the other bank before every lane has arrived at the
// next barrier, so one barrier per collective suffices.
inline uint64_t *slot(int lane, int word) {
    return &block->slots[(((size_t)(me().linear >> 5) * 2 + me().bank) * 32 + lane) * 8 + word];
}
inline void begin_collective() { me().bank ^= 1; }
inline int lane_id() { return me().linear & 31; }

static void fiber_entry() {
    block->body(block->argument);
    me().finished = true;
#ifdef SSD_EMU_FAST_SWITCH
    ssd_emu_switch(&me().sp, block->schedulerSp);  // never resumed
    abort();
#endif
}

// Runs every thread of the current block to completion; false on a barrier deadlock.
inline bool run_block(int threads) {
    Block &b = *block;
    if (b.direct) {
        for (int i = 0; i < threads; ++i) {
            Fiber &f = b.fibers[i];
            f.finished = false; f.linear = i; f.index = {(unsigned)i, 0, 0};
            b.current = i;
            b.body(b.argument);
        }
        return true;
    }
    b.live = threads; b.arrived = 0;
    int warps = (threads + 31) / 32;
    b.warpLive.assign(warps, 0); b.warpArrived.assign(warps, 0); b.warpGeneration.assign(warps, 0);
    for (int i = 0; i < threads; ++i) b.warpLive[i >> 5]++;
    b.slots.assign((size_t)warps * 2 * 32 * 8, 0);
    for (int i = 0; i < threads; ++i) {
        Fiber &f = b.fibers[i];
        f.finished = false; f.linear = i; f.index = {(unsigned)i, 0, 0}; f.bank = 0;
#ifdef SSD_EMU_FAST_SWITCH
        // A new stack as ssd_emu_switch leaves one: six saved registers, then fiber_entry as the
        // return address, then a slot standing for fiber_entry's own return address.
        void **top = (void **)(((uintptr_t)(f.stack + f.stackSize)) & ~(uintptr_t)15);
        *--top = nullptr;
        *--top = (void *)&fiber_entry;
        for (int r = 0; r < 6; ++r) *--top = nullptr;
        f.sp = top;
#else
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack;
        f.context.uc_stack.ss_size = f.stackSize;
        f.context.uc_link = &b.scheduler;
        makecontext(&f.context, fiber_entry, 0);
#endif
    }
    std::vector<bool> done(threads, false);
    int remaining = threads;
    while (remaining > 0) {
        long before = b.progress;
        for (int i = 0; i < threads; ++i) {
            if (done[i]) continue;
            b.current = i;
#ifdef SSD_EMU_FAST_SWITCH
            ssd_emu_switch(&b.schedulerSp, b.fibers[i].sp);
#else
            swapcontext(&b.scheduler, &b.fibers[i].context);
#endif
            if (b.fibers[i].finished) {
                done[i] = true; remaining--; b.progress++;
                b.live--; b.warpLive[i >> 5]--;
                if (b.arrived > 0 && b.arrived == b.live) release_block();
                int w = i >> 5;
                if (b.warpArrived[w] > 0 && b.warpArrived[w] == b.warpLive[w]) { b.warpArrived[w] = 0; b.warpGeneration[w]++; }
            }
        }
        if (b.progress == before) return false;
    }
    return true;
}

template <class... A, size_t... I>
void invoke(void (*f)(A...), void **p, std::index_sequence<I...>) {
    f(*reinterpret_cast<typename std::remove_reference<A>::type *>(p[I])...);
}
template <class... A> struct Call { void (*f)(A...); void **p; };
template <class... A> void trampoline(void *c) {
    Call<A...> *call = (Call<A...> *)c;
    invoke(call->f, call->p, std::index_sequence_for<A...>{});
}

template <class... A>
int launch(void (*f)(A...), unsigned gx, unsigned gy, unsigned gz, unsigned bx, void **p) {
    Block b;
    b.fibers.resize(bx);
    // Fiber stacks with a guard page below each (an overflow faults instead of corrupting memory),
    // kept for the next launches.
    static std::vector<char *> stacks;
    const size_t page = 4096, stackBytes = 128 << 10;
    while (stacks.size() < bx) {
        char *m = (char *)mmap(nullptr, stackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == (char *)MAP_FAILED) abort();
        mprotect(m, page, PROT_NONE);
        stacks.push_back(m + page);
    }
    for (unsigned i = 0; i < bx; ++i) { b.fibers[i].stack = stacks[i]; b.fibers[i].stackSize = stackBytes; }
    Call<A...> call{f, p};
    b.body = trampoline<A...>;
    b.argument = &call;
    block = &b;
    gridDimension = {gx, gy, gz};
    blockDimension = {bx, 1, 1};
    bool first = true;
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                blockIndex = {x, y, z};
                if (!run_block((int)bx)) { block = nullptr; return -2; }
                if (first) { b.direct = b.barrierCalls == 0; first = false; }
            }
    block = nullptr;
    return 0;
}

// The parameters of a launch, copied (each to its own heap cell) for a graph replay later.
template <class... A, size_t... I>
void **copy_params_at(void **p, std::index_sequence<I...>) {
    void **copy = (void **)malloc(sizeof(void *) * (sizeof...(A) + 1));
    ((copy[I] = new typename std::remove_reference<A>::type(*reinterpret_cast<typename std::remove_reference<A>::type *>(p[I]))), ...);
    return copy;
}
template <class... A> void **copy_params(void (*)(A...), void **p) { return copy_params_at<A...>(p, std::index_sequence_for<A...>{}); }

inline uint64_t bits(float v) { uint32_t u; memcpy(&u, &v, 4); return u; }
}  // namespace emu

#define threadIdx (emu::me().index)
#define blockIdx (emu::blockIndex)
#define blockDim (emu::blockDimension)
#define gridDim (emu::gridDimension)
inline void __syncthreads() { emu::sync_block(); }

template <class T> inline T __shfl_xor_sync(unsigned, T v, int mask) {
    static_assert(sizeof(T) <= 8, "word");
    uint64_t w = 0; memcpy(&w, &v, sizeof v);
    emu::begin_collective();
    *emu::slot(emu::lane_id(), 0) = w;
    emu::sync_warp();
    uint64_t o = *emu::slot(emu::lane_id() ^ mask, 0);
    T r; memcpy(&r, &o, sizeof r);
    return r;
}

inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline float rsqrtf(float v) { return 1.0f / sqrtf(v); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }

// IEEE half <-> float (round to nearest even), as cvt.f32.f16 / cvt.rn.f16.f32.
inline float h2f(unsigned short h) {
    unsigned sign = (unsigned)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0) {
        if (m == 0) u = sign;
        else { float f = ldexpf((float)m, -24); u = sign | __float_as_uint(f); }
    } else if (e == 31) u = sign | 0x7f800000u | (m << 13);
    else u = sign | ((e + 112) << 23) | (m << 13);
    return __uint_as_float(u);
}
inline unsigned short f2h(float f) {
    unsigned u = __float_as_uint(f), sign = (u >> 16) & 0x8000u;
    unsigned a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (unsigned short)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // rounds to >= 65520: infinity
    if (a < 0x38800000u) {  // below the smallest normal half: subnormal (or zero)
        float v = __uint_as_float(a) * 16777216.0f;  // in units of 2^-24
        float r = nearbyintf(v);
        return (unsigned short)(sign | (unsigned)r);
    }
    unsigned mant = a & 0x7fffffu, exp = (a >> 23) - 112;
    unsigned half = (exp << 10) | (mant >> 13);
    unsigned rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++;
    return (unsigned short)(sign | half);
}

// Shared-memory "addresses": the low 32 bits of the pointer (function statics share the high bits).
inline unsigned smem_u32(const void *p) {
    uintptr_t a = (uintptr_t)p;
    if (!emu::sharedHigh) emu::sharedHigh = a >> 32;
    if ((a >> 32) != emu::sharedHigh) abort();
    return (unsigned)a;
}
inline unsigned short *smem_ptr(unsigned a) { return (unsigned short *)((emu::sharedHigh << 32) | a); }
inline void cp_async16(unsigned dst, const void *src, int bytes) {
    if (bytes) memcpy(smem_ptr(dst), src, 16); else memset(smem_ptr(dst), 0, 16);
}
inline void cp_async_commit() {}
inline void cp_async_wait_all() {}
inline void cp_async_wait_one() {}

// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i; lane l receives, per matrix,
// row l/4, columns 2(l%4) and 2(l%4)+1 (with .trans: rows 2(l%4), 2(l%4)+1 of column l/4).
inline void ldsm_any(unsigned *r, unsigned addr, bool trans) {
    int lane = emu::lane_id();
    emu::begin_collective();
    *emu::slot(lane, 0) = (uint64_t)(uintptr_t)smem_ptr(addr);
    emu::sync_warp();
    for (int i = 0; i < 4; ++i) {
        unsigned lo, hi;
        if (!trans) {
            const unsigned short *row = (const unsigned short *)(uintptr_t)*emu::slot(i * 8 + lane / 4, 0);
            lo = row[(lane % 4) * 2]; hi = row[(lane % 4) * 2 + 1];
        } else {
            const unsigned short *ra = (const unsigned short *)(uintptr_t)*emu::slot(i * 8 + (lane % 4) * 2, 0);
            const unsigned short *rb = (const unsigned short *)(uintptr_t)*emu::slot(i * 8 + (lane % 4) * 2 + 1, 0);
            lo = ra[lane / 4]; hi = rb[lane / 4];
        }
        r[i] = lo | (hi << 16);
    }
}
inline void ldsm_x4(unsigned &r0, unsigned &r1, unsigned &r2, unsigned &r3, unsigned addr) {
    unsigned r[4]; ldsm_any(r, addr, false); r0 = r[0]; r1 = r[1]; r2 = r[2]; r3 = r[3];
}
inline void ldsm_x4_t(unsigned &r0, unsigned &r1, unsigned &r2, unsigned &r3, unsigned addr) {
    unsigned r[4]; ldsm_any(r, addr, true); r0 = r[0]; r1 = r[1]; r2 = r[2]; r3 = r[3];
}

// mma.sync.m16n8k16.row.col.f32.f16.f16.f32: g = lane/4, t = lane%4. A (16x16): register
// (row >= 8) + 2 (col >= 8) of lane 4(row%8) + (col%8)/2, half col%2. B (16x8): register (k >= 8)
// of lane 4n + (k%8)/2, half k%2. C/D: c0,c1 row g, c2,c3 row g+8, columns 2t, 2t+1.
inline float mma_half(int lane, int reg, int which) {
    unsigned w = (unsigned)*emu::slot(lane, reg);
    return h2f((unsigned short)(which ? w >> 16 : w & 0xffffu));
}
inline void mma16816f(float *c, const unsigned *a, unsigned b0, unsigned b1) {
    int lane = emu::lane_id();
    emu::begin_collective();
    for (int i = 0; i < 4; ++i) *emu::slot(lane, i) = a[i];
    *emu::slot(lane, 4) = b0; *emu::slot(lane, 5) = b1;
    emu::sync_warp();
    int g = lane >> 2, t = lane & 3;
    for (int e = 0; e < 4; ++e) {
        int row = e < 2 ? g : g + 8, col = t * 2 + (e & 1);
        float sum = 0.0f;
        for (int k = 0; k < 16; ++k) {
            float av = mma_half((row % 8) * 4 + (k % 8) / 2, (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0), k & 1);
            float bv = mma_half(col * 4 + (k % 8) / 2, 4 + (k >= 8 ? 1 : 0), k & 1);
            sum += av * bv;
        }
        c[e] += sum;
    }
}
inline void mma16816(float *c, const unsigned *a, unsigned b0, unsigned b1) { mma16816f(c, a, b0, b1); }
#endif
