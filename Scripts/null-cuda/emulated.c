/* Emulated CUDA: the entry points of Sources/CCUDA/include/CCUDA.h computing on the host, so that
 * CUDABackend runs *with numbers* on a machine without a GPU (slowly): device memory is host memory,
 * NVRTC "compiles" a kernel group with the host C++ compiler and emulator.h into a shared library
 * (its CUBIN is that library's path), kernel launches run there, cuBLASLt matrix products and cuDNN
 * NHWC convolutions are plain loops (fp32 accumulation, results rounded to the output type as on a
 * GPU). The stream is synchronous. CUDA graphs are emulated: while the stream is captured, kernel
 * launches, device copies and sets, products and convolutions are recorded (arguments and descriptor
 * contents copied) instead of run, memory allocated then belongs to the graph, and a graph launch
 * runs the recording. Built by build.sh next to the null library. */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define DEVICE_NAME "emulated CUDA device"
#define MULTIPROCESSORS 4  /* small grids for the grid-stride kernels */
#include "device.h"

#ifndef EMULATOR_HEADER
#error "build with -DEMULATOR_HEADER=\"/path/to/emulator.h\""
#endif

/* ---------------------------------------------------------------- numbers */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    float f;
    if (e == 0) {
        f = ldexpf((float)m, -24);
        memcpy(&u, &f, 4);
        u |= sign;
    } else if (e == 31) u = sign | 0x7f800000u | (m << 13);
    else u = sign | ((e + 112) << 23) | (m << 13);
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t float_to_half(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {
        float v;
        memcpy(&v, &a, 4);
        return (uint16_t)(sign | (uint32_t)nearbyintf(v * 16777216.0f));
    }
    uint32_t mant = a & 0x7fffffu, exp = (a >> 23) - 112, half = (exp << 10) | (mant >> 13), rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++;
    return (uint16_t)(sign | half);
}
static float bf16_to_float(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }
static uint16_t float_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
/* Element types: cuBLASLt's cudaDataType (0 f32, 2 f16, 14 bf16) and cuDNN's (0 f32, 2 f16, 9 bf16). */
enum { T_F32, T_F16, T_BF16 };
static int blas_type(int t) { return t == CCUDA_R_16F ? T_F16 : t == CCUDA_R_16BF ? T_BF16 : T_F32; }
static int dnn_type(int t) { return t == CCUDNN_DATA_HALF ? T_F16 : t == CCUDNN_DATA_BFLOAT16 ? T_BF16 : T_F32; }
static float load(const void *p, int64_t i, int t) {
    if (t == T_F16) return half_to_float(((const uint16_t *)p)[i]);
    if (t == T_BF16) return bf16_to_float(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}
static void store(void *p, int64_t i, int t, float v) {
    if (t == T_F16) ((uint16_t *)p)[i] = float_to_half(v);
    else if (t == T_BF16) ((uint16_t *)p)[i] = float_to_bf16(v);
    else ((float *)p)[i] = v;
}

/* ---------------------------------------------------------------- stream capture */
typedef struct { void (*run)(void *); void *argument; } op_t;
typedef struct { op_t *ops; int count, capacity; } graph_t;
static graph_t *recording = NULL;  /* non-NULL while the stream is captured */
static void record(void (*run)(void *), void *argument) {
    if (recording->count == recording->capacity) {
        recording->capacity = recording->capacity ? 2 * recording->capacity : 64;
        recording->ops = realloc(recording->ops, sizeof(op_t) * (size_t)recording->capacity);
    }
    recording->ops[recording->count++] = (op_t){run, argument};
}
EXPORT CUresult cuStreamBeginCapture_v2(CUstream s, int mode) {
    (void)s; (void)mode;
    if (recording) return 900; /* CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED */
    recording = calloc(1, sizeof *recording);
    return 0;
}
EXPORT CUresult cuStreamEndCapture(CUstream s, CUgraph *g) { (void)s; *g = (CUgraph)recording; recording = NULL; return 0; }
EXPORT CUresult cuStreamIsCapturing(CUstream s, int *status) {
    (void)s; *status = recording ? CCUDA_STREAM_CAPTURE_STATUS_ACTIVE : CCUDA_STREAM_CAPTURE_STATUS_NONE; return 0;
}
EXPORT CUresult cuGraphGetNodes(CUgraph g, CUgraphNode *nodes, size_t *count) { (void)nodes; *count = (size_t)((graph_t *)g)->count; return 0; }
EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec *e, CUgraph g, unsigned long long f) { (void)f; *e = (CUgraphExec)g; return 0; }
EXPORT CUresult cuGraphLaunch(CUgraphExec e, CUstream s) {
    (void)s;
    graph_t *g = (graph_t *)e;
    for (int i = 0; i < g->count; i++) g->ops[i].run(g->ops[i].argument);
    return 0;
}
/* Executable graph and graph share the recording: destroying the graph frees it. Memory allocated
 * during the capture stays (the backend's graph memory accounting is its own). */
EXPORT CUresult cuGraphDestroy(CUgraph g) { graph_t *x = (graph_t *)g; if (x) { free(x->ops); free(x); } return 0; }

/* ---------------------------------------------------------------- driver */
EXPORT CUresult cuMemAllocAsync(CUdeviceptr *p, size_t bytes, CUstream s) {
    (void)s;
    void *m = aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!m) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
    *p = (CUdeviceptr)(uintptr_t)m;
    return 0;
}
/* Inside a capture, freed memory stays with the graph (its nodes may use it at every launch). */
EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) { (void)s; if (!recording) free((void *)(uintptr_t)p); return 0; }
/* Host transfers inside a capture are refused (the backend never makes them there). */
EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, CUstream st) {
    (void)st; if (recording) return 900; memcpy((void *)(uintptr_t)d, s, n); return 0;
}
EXPORT CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, CUstream st) {
    (void)st; if (recording) return 900; memcpy(d, (const void *)(uintptr_t)s, n); return 0;
}
typedef struct { CUdeviceptr d, s; size_t n; int value; } copy_t;
static void run_copy(void *a) {
    copy_t *c = a;
    if (c->value < 0) memmove((void *)(uintptr_t)c->d, (const void *)(uintptr_t)c->s, c->n);
    else memset((void *)(uintptr_t)c->d, c->value, c->n);
}
static CUresult copy_or_set(CUdeviceptr d, CUdeviceptr s, size_t n, int value) {
    copy_t c = {d, s, n, value};
    if (recording) { copy_t *r = malloc(sizeof c); *r = c; record(run_copy, r); } else run_copy(&c);
    return 0;
}
EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) { (void)st; return copy_or_set(d, s, n, -1); }
EXPORT CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream st) { (void)st; return copy_or_set(d, 0, n, v); }

/* Modules: the "image" is the path of a shared library built by nvrtcCompileProgram below. */
typedef int (*launch_fn)(const char *, unsigned, unsigned, unsigned, unsigned, void **);
typedef void **(*copy_fn)(const char *, void **);
typedef struct { void *handle; launch_fn launch; copy_fn copy; } module_t;
typedef struct { module_t *module; char *name; } function_t;
EXPORT CUresult cuModuleLoadData(CUmodule *m, const void *image) {
    void *h = dlopen((const char *)image, RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "emulated CUDA: %s\n", dlerror()); return 200; /* CUDA_ERROR_INVALID_IMAGE */ }
    module_t *mod = calloc(1, sizeof *mod);
    mod->handle = h;
    mod->launch = (launch_fn)dlsym(h, "ssd_emu_launch");
    mod->copy = (copy_fn)dlsym(h, "ssd_emu_copy_params");
    *m = (CUmodule)mod;
    return mod->launch && mod->copy ? 0 : 200;
}
EXPORT CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
    function_t *fn = calloc(1, sizeof *fn);
    fn->module = (module_t *)m;
    fn->name = strdup(name);
    *f = (CUfunction)fn;
    return 0;
}
typedef struct { function_t *fn; unsigned gx, gy, gz, bx; void **params; } launch_t;
static void run_launch(void *a) {
    launch_t *l = a;
    int r = l->fn->module->launch(l->fn->name, l->gx, l->gy, l->gz, l->bx, l->params);
    if (r != 0) fprintf(stderr, "emulated CUDA: replayed launch of %s failed (%d)\n", l->fn->name, r);
}
EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                               unsigned shared, CUstream s, void **params, void **extra) {
    (void)shared; (void)s; (void)extra;
    function_t *fn = (function_t *)f;
    if (by != 1 || bz != 1) return 1;
    if (recording) {
        launch_t *l = malloc(sizeof *l);
        *l = (launch_t){fn, gx, gy, gz, bx, fn->module->copy(fn->name, params)};
        if (!l->params) return 1;
        record(run_launch, l);
        return 0;
    }
    int r = fn->module->launch(fn->name, gx, gy, gz, bx, params);
    if (r != 0) fprintf(stderr, "emulated CUDA: launch of %s failed (%d)\n", fn->name, r);
    return r == 0 ? 0 : 719; /* CUDA_ERROR_LAUNCH_FAILED */
}

/* ---------------------------------------------------------------- NVRTC */
typedef struct { char *source; char **names; int count; char *library; char *log; } program_t;
EXPORT const char *nvrtcGetErrorString(nvrtcResult r) { return r == 0 ? "NVRTC_SUCCESS" : "emulated NVRTC error"; }
EXPORT nvrtcResult nvrtcCreateProgram(nvrtcProgram *p, const char *src, const char *name, int n, const char *const *h, const char *const *i) {
    (void)name; (void)n; (void)h; (void)i;
    program_t *prog = calloc(1, sizeof *prog);
    prog->source = strdup(src);
    *p = (nvrtcProgram)prog;
    return 0;
}
EXPORT nvrtcResult nvrtcAddNameExpression(nvrtcProgram p, const char *name) {
    program_t *prog = (program_t *)p;
    prog->names = realloc(prog->names, sizeof(char *) * (size_t)(prog->count + 1));
    prog->names[prog->count++] = strdup(name);
    return 0;
}
EXPORT nvrtcResult nvrtcCompileProgram(nvrtcProgram p, int n, const char *const *options) {
    (void)n; (void)options;
    program_t *prog = (program_t *)p;
    static int serial = 0;
    char base[512], cpp[600], log[600], command[4096], built[512];
    const char *compiler = getenv("SSD_EMULATED_CUDA_CXX") ? getenv("SSD_EMULATED_CUDA_CXX") : "c++";
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    /* The whole C++ file, in memory first. */
    char *text = NULL;
    size_t textLength = 0;
    FILE *f = open_memstream(&text, &textLength);
    if (!f) return 6;
    fprintf(f, "#define SSD_EMULATION 1\n#include \"%s\"\n%s\n", EMULATOR_HEADER, prog->source);
    fprintf(f, "extern \"C\" int ssd_emu_launch(const char *name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, void **p) {\n");
    for (int i = 0; i < prog->count; i++)
        fprintf(f, "    if (!strcmp(name, \"%s\")) return emu::launch(&%s, gx, gy, gz, bx, p);\n", prog->names[i], prog->names[i]);
    fprintf(f, "    return -1;\n}\n");
    fprintf(f, "extern \"C\" void **ssd_emu_copy_params(const char *name, void **p) {\n");
    for (int i = 0; i < prog->count; i++)
        fprintf(f, "    if (!strcmp(name, \"%s\")) return emu::copy_params(&%s, p);\n", prog->names[i], prog->names[i]);
    fprintf(f, "    return nullptr;\n}\n");
    fclose(f);
    /* The library is named by a hash of everything it is built from (the whole file, the emulator
     * header's text, the compiler command), so that an image naming it (what nvrtcGetCUBIN hands out,
     * e.g. to the kernel disk cache) always means this code; an existing one is reused. */
    unsigned long long hash = 1469598103934665603ULL;
#define HASH_BYTES(ptr, len) do { const unsigned char *b_ = (const unsigned char *)(ptr); \
        for (size_t i_ = 0; i_ < (size_t)(len); i_++) { hash ^= b_[i_]; hash *= 1099511628211ULL; } hash ^= 0xff; hash *= 1099511628211ULL; } while (0)
    HASH_BYTES(text, textLength);
    HASH_BYTES(compiler, strlen(compiler));
    FILE *header = fopen(EMULATOR_HEADER, "rb");
    if (header) { char chunk[4096]; size_t got; while ((got = fread(chunk, 1, sizeof chunk, header)) > 0) HASH_BYTES(chunk, got); fclose(header); }
#undef HASH_BYTES
    if (snprintf(built, sizeof built, "%s/ssd-emulated-cuda-%016llx.so", tmp, hash) >= (int)sizeof built) { free(text); return 6; }
    prog->library = strdup(built);
    struct stat existing;
    if (stat(built, &existing) == 0 && existing.st_uid == geteuid()) { prog->log = calloc(1, 1); free(text); return 0; }
    /* Written and built under this process's and call's own names, then renamed: no other process or
     * thread ever loads a half-written library. */
    int call = __atomic_fetch_add(&serial, 1, __ATOMIC_RELAXED);
    if (snprintf(base, sizeof base, "%s/ssd-emulated-cuda-%016llx-%d-%d", tmp, hash, (int)getpid(), call) >= (int)sizeof base) { free(text); return 6; }
    snprintf(cpp, sizeof cpp, "%s.cpp", base);
    snprintf(log, sizeof log, "%s.log", base);
    f = fopen(cpp, "w");
    if (!f) { free(text); return 6; }
    fwrite(text, 1, textLength, f);
    fclose(f);
    free(text);
    if (snprintf(command, sizeof command, "%s -std=c++17 -O1 -shared -fPIC -w -o %s.so %s > %s 2>&1 && mv -f %s.so %s",
                 compiler, base, cpp, log, base, built) >= (int)sizeof command) { unlink(cpp); return 6; }
    int status = system(command);
    FILE *l = fopen(log, "r");
    prog->log = calloc(1, 65536);
    if (l) { size_t got = fread(prog->log, 1, 65535, l); prog->log[got] = 0; fclose(l); }
    unlink(cpp);
    unlink(log);
    return status == 0 ? 0 : 6; /* NVRTC_ERROR_COMPILATION */
}
EXPORT nvrtcResult nvrtcGetProgramLogSize(nvrtcProgram p, size_t *s) { program_t *prog = (program_t *)p; *s = (prog->log ? strlen(prog->log) : 0) + 1; return 0; }
EXPORT nvrtcResult nvrtcGetProgramLog(nvrtcProgram p, char *out) { program_t *prog = (program_t *)p; strcpy(out, prog->log ? prog->log : ""); return 0; }
EXPORT nvrtcResult nvrtcGetCUBINSize(nvrtcProgram p, size_t *s) { *s = strlen(((program_t *)p)->library) + 1; return 0; }
EXPORT nvrtcResult nvrtcGetCUBIN(nvrtcProgram p, char *out) { strcpy(out, ((program_t *)p)->library); return 0; }
EXPORT nvrtcResult nvrtcDestroyProgram(nvrtcProgram *p) { (void)p; return 0; /* the library stays loaded; names leak */ }

/* ---------------------------------------------------------------- cuBLASLt (column-major) */
typedef struct { int transa, transb, epilogue; CUdeviceptr bias; } matmul_desc_t;
typedef struct { int type; uint64_t rows, cols; int64_t ld; int batch; int64_t stride; } layout_t;
EXPORT cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, int c, int s) {
    (void)c; (void)s;
    matmul_desc_t *m = calloc(1, sizeof *m);
    m->epilogue = CCUBLASLT_EPILOGUE_DEFAULT;
    *d = (cublasLtMatmulDesc_t)m;
    return 0;
}
EXPORT cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, int attribute, const void *value, size_t size) {
    matmul_desc_t *m = (matmul_desc_t *)d;
    (void)size;
    switch (attribute) {
    case CCUBLASLT_MATMUL_DESC_TRANSA: m->transa = *(const int *)value; break;
    case CCUBLASLT_MATMUL_DESC_TRANSB: m->transb = *(const int *)value; break;
    case CCUBLASLT_MATMUL_DESC_EPILOGUE: m->epilogue = (int)*(const uint32_t *)value; break;
    case CCUBLASLT_MATMUL_DESC_BIAS_POINTER: m->bias = *(const CUdeviceptr *)value; break;
    default: break;
    }
    return 0;
}
EXPORT cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, int t, uint64_t r, uint64_t c, int64_t ld) {
    layout_t *x = calloc(1, sizeof *x);
    x->type = t; x->rows = r; x->cols = c; x->ld = ld; x->batch = 1;
    *l = (cublasLtMatrixLayout_t)x;
    return 0;
}
EXPORT cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, int attribute, const void *value, size_t size) {
    layout_t *x = (layout_t *)l;
    (void)size;
    if (attribute == CCUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) x->batch = *(const int32_t *)value;
    if (attribute == CCUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET) x->stride = *(const int64_t *)value;
    return 0;
}
typedef struct { matmul_desc_t m; layout_t a, b, c, d; float alpha, beta; const void *A, *B, *C; void *D; } matmul_t;
static void run_matmul(void *argument);
EXPORT cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void *alpha, const void *A, cublasLtMatrixLayout_t Adesc,
                                     const void *B, cublasLtMatrixLayout_t Bdesc, const void *beta, const void *C, cublasLtMatrixLayout_t Cdesc,
                                     void *D, cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo, void *ws, size_t wsBytes,
                                     CUstream s) {
    (void)h; (void)algo; (void)ws; (void)wsBytes; (void)s;
    matmul_t call = {*(const matmul_desc_t *)desc, *(const layout_t *)Adesc, *(const layout_t *)Bdesc, *(const layout_t *)Cdesc,
                     *(const layout_t *)Ddesc, *(const float *)alpha, *(const float *)beta, A, B, C, D};
    if (recording) { matmul_t *r = malloc(sizeof call); *r = call; record(run_matmul, r); } else run_matmul(&call);
    return 0;
}
static void run_matmul(void *argument) {
    const matmul_t *call = argument;
    const matmul_desc_t *m = &call->m;
    const layout_t *la = &call->a, *lb = &call->b, *lc = &call->c, *ld = &call->d;
    const void *A = call->A, *B = call->B, *C = call->C;
    void *D = call->D;
    const float al = call->alpha, be = call->beta;
    const int64_t M = (int64_t)ld->rows, N = (int64_t)ld->cols, K = m->transa ? (int64_t)la->rows : (int64_t)la->cols;
    const int ta = blas_type(la->type), tb = blas_type(lb->type), tc = blas_type(lc->type), td = blas_type(ld->type);
    const int bias = m->epilogue == CCUBLASLT_EPILOGUE_BIAS;
    float *col = malloc(sizeof(float) * (size_t)K);
    for (int batch = 0; batch < ld->batch; batch++) {
        const char *a = (const char *)A + (size_t)(batch * la->stride) * (ta == T_F32 ? 4 : 2);
        const char *b = (const char *)B + (size_t)(batch * lb->stride) * (tb == T_F32 ? 4 : 2);
        const char *c = (const char *)C + (size_t)(batch * lc->stride) * (tc == T_F32 ? 4 : 2);
        char *d = (char *)D + (size_t)(batch * ld->stride) * (td == T_F32 ? 4 : 2);
        for (int64_t j = 0; j < N; j++) {
            for (int64_t l = 0; l < K; l++) col[l] = m->transb ? load(b, j + l * lb->ld, tb) : load(b, l + j * lb->ld, tb);
            for (int64_t i = 0; i < M; i++) {
                float sum = 0.0f;
                for (int64_t l = 0; l < K; l++) sum += (m->transa ? load(a, l + i * la->ld, ta) : load(a, i + l * la->ld, ta)) * col[l];
                float v = al * sum;
                if (be != 0.0f) v += be * load(c, i + j * lc->ld, tc);
                if (bias) v += load((const void *)(uintptr_t)m->bias, i, td);
                store(d, i + j * ld->ld, td, v);
            }
        }
    }
    free(col);
}

/* ---------------------------------------------------------------- cuDNN (NHWC, OHWI filters) */
typedef struct { int format, type, n, c, h, w; } tensor_t;
typedef struct { int padH, padW, strideH, strideW, dilH, dilW; } conv_t;
EXPORT const char *cudnnGetErrorString(cudnnStatus_t s) { return s == 0 ? "CUDNN_STATUS_SUCCESS" : "emulated cuDNN error"; }
EXPORT cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) { *d = (cudnnTensorDescriptor_t)calloc(1, sizeof(tensor_t)); return 0; }
EXPORT cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) { *d = (cudnnFilterDescriptor_t)calloc(1, sizeof(tensor_t)); return 0; }
EXPORT cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) { *d = (cudnnConvolutionDescriptor_t)calloc(1, sizeof(conv_t)); return 0; }
EXPORT cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, int format, int type, int n, int c, int h, int w) {
    tensor_t *t = (tensor_t *)d;
    t->format = format; t->type = type; t->n = n; t->c = c; t->h = h; t->w = w;
    return format == CCUDNN_TENSOR_NHWC ? 0 : 9; /* CUDNN_STATUS_NOT_SUPPORTED */
}
EXPORT cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, int type, int format, int k, int c, int h, int w) {
    tensor_t *t = (tensor_t *)d;
    t->format = format; t->type = type; t->n = k; t->c = c; t->h = h; t->w = w;
    return format == CCUDNN_TENSOR_NHWC ? 0 : 9;
}
EXPORT cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int padH, int padW, int strideH, int strideW,
                                                     int dilationH, int dilationW, int mode, int computeType) {
    (void)mode; (void)computeType;
    conv_t *c = (conv_t *)d;
    c->padH = padH; c->padW = padW; c->strideH = strideH; c->strideW = strideW; c->dilH = dilationH; c->dilW = dilationW;
    return 0;
}
EXPORT cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
                                                             cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t y, int algo, size_t *bytes) {
    (void)h; (void)x; (void)w; (void)c; (void)y; (void)algo; *bytes = 0; return 0;
}
/* y = alpha1·conv(x, w) + alpha2·z + bias (z and bias optional). */
static void convolve(const tensor_t *xd, const void *x, const tensor_t *wd, const void *w, const conv_t *cd, float alpha1,
                     float alpha2, const void *z, const tensor_t *bd, const void *bias, float beta, const tensor_t *yd, void *y) {
    const int tx = dnn_type(xd->type), tw = dnn_type(wd->type), ty = dnn_type(yd->type);
    for (int n = 0; n < yd->n; n++)
        for (int oy = 0; oy < yd->h; oy++)
            for (int ox = 0; ox < yd->w; ox++)
                for (int k = 0; k < yd->c; k++) {
                    float sum = 0.0f;
                    for (int ky = 0; ky < wd->h; ky++) {
                        int iy = oy * cd->strideH - cd->padH + ky * cd->dilH;
                        if (iy < 0 || iy >= xd->h) continue;
                        for (int kx = 0; kx < wd->w; kx++) {
                            int ix = ox * cd->strideW - cd->padW + kx * cd->dilW;
                            if (ix < 0 || ix >= xd->w) continue;
                            int64_t xi = (((int64_t)n * xd->h + iy) * xd->w + ix) * xd->c;
                            int64_t wi = (((int64_t)k * wd->h + ky) * wd->w + kx) * wd->c;
                            for (int c = 0; c < xd->c; c++) sum += load(x, xi + c, tx) * load(w, wi + c, tw);
                        }
                    }
                    int64_t yi = (((int64_t)n * yd->h + oy) * yd->w + ox) * yd->c + k;
                    float v = alpha1 * sum;
                    if (beta != 0.0f) v += beta * load(y, yi, ty);
                    if (z && alpha2 != 0.0f) v += alpha2 * load(z, yi, ty);
                    if (bias) v += load(bias, k, dnn_type(bd->type));
                    store(y, yi, ty, v);
                }
}
typedef struct { tensor_t xd, wd, bd, yd; conv_t cd; const void *x, *w, *z, *bias; void *y; float alpha1, alpha2, beta; int hasBias; } conv_call_t;
static void run_conv(void *argument) {
    const conv_call_t *c = argument;
    convolve(&c->xd, c->x, &c->wd, c->w, &c->cd, c->alpha1, c->alpha2, c->z, c->hasBias ? &c->bd : NULL, c->hasBias ? c->bias : NULL,
             c->beta, &c->yd, c->y);
}
static void conv_or_record(conv_call_t call) {
    if (recording) { conv_call_t *r = malloc(sizeof call); *r = call; record(run_conv, r); } else run_conv(&call);
}
EXPORT cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha, cudnnTensorDescriptor_t xDesc, const void *x,
                                             cudnnFilterDescriptor_t wDesc, const void *w, cudnnConvolutionDescriptor_t conv, int algo,
                                             void *workspace, size_t workspaceBytes, const void *beta, cudnnTensorDescriptor_t yDesc, void *y) {
    (void)h; (void)algo; (void)workspace; (void)workspaceBytes;
    conv_call_t call = {*(const tensor_t *)xDesc, *(const tensor_t *)wDesc, {0}, *(const tensor_t *)yDesc, *(const conv_t *)conv,
                        x, w, NULL, NULL, y, *(const float *)alpha, 0, *(const float *)beta, 0};
    conv_or_record(call);
    return 0;
}
EXPORT cudnnStatus_t cudnnConvolutionBiasActivationForward(cudnnHandle_t h, const void *alpha1, cudnnTensorDescriptor_t xDesc, const void *x,
                                                           cudnnFilterDescriptor_t wDesc, const void *w, cudnnConvolutionDescriptor_t conv, int algo,
                                                           void *workspace, size_t workspaceBytes, const void *alpha2, cudnnTensorDescriptor_t zDesc,
                                                           const void *z, cudnnTensorDescriptor_t biasDesc, const void *bias,
                                                           cudnnActivationDescriptor_t activation, cudnnTensorDescriptor_t yDesc, void *y) {
    (void)h; (void)workspace; (void)workspaceBytes; (void)zDesc; (void)activation;
    if (algo != CCUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM) return 9; /* identity needs implicit precomp GEMM */
    /* z may be y itself (alpha2 = 0): read before write per element, as convolve does. */
    conv_call_t call = {*(const tensor_t *)xDesc, *(const tensor_t *)wDesc, *(const tensor_t *)biasDesc, *(const tensor_t *)yDesc,
                        *(const conv_t *)conv, x, w, z, bias, y, *(const float *)alpha1, *(const float *)alpha2, 0, 1};
    conv_or_record(call);
    return 0;
}

/* ---------------------------------------------------------------- cuDNN graph (backend) API */
/* Descriptors keep their attributes as set (copied); finalize checks what each kind needs, as cuDNN
 * does (dimensions that agree, required attributes), and refuses modes it does not run; the
 * heuristics offer two engine configurations (both the graph itself); an execution plan runs the
 * graph's operations in order (forward convolution, matmul, reduction MAX/ADD, pointwise ADD, SUB,
 * MUL, DIV, EXP, LOG with size-1 dimensions broadcast, cuDNN 9.13's SDPA forward operation), reading every tensor's dimensions and strides
 * from its descriptor (so wrong strides give wrong numbers, as on a GPU); virtual tensors live in
 * host buffers of their declared type for the call; by-value scalars are copied at execution (a
 * recorded execution keeps the value it was captured with, as a CUDA graph does). */
typedef struct { int name, type; int64_t count; void *data; } battr_t;
typedef struct bdesc { int kind, finalized, count; battr_t attrs[16]; } bdesc_t;
enum { BAD_PARAM = 3, NOT_SUPPORTED = 9, ENGINECFG_GRAPH = 300 /* CUDNN_ATTR_ENGINECFG_ENGINE: here the graph */ };

static size_t battr_size(int type) {
    switch (type) {
    case CCUDNN_TYPE_BOOLEAN: return 1;
    case CCUDNN_TYPE_DATA_TYPE: case CCUDNN_TYPE_FLOAT: case CCUDNN_TYPE_CONVOLUTION_MODE: case CCUDNN_TYPE_HEUR_MODE:
    case CCUDNN_TYPE_POINTWISE_MODE: case CCUDNN_TYPE_REDUCTION_OPERATOR_TYPE: return 4;
    case CCUDNN_TYPE_HANDLE: case CCUDNN_TYPE_INT64: case CCUDNN_TYPE_VOID_PTR: case CCUDNN_TYPE_BACKEND_DESCRIPTOR: return 8;
    default: return 0;
    }
}
static battr_t *battr(const bdesc_t *d, int name, int type) {
    for (int i = 0; i < d->count; i++)
        if (d->attrs[i].name == name) return d->attrs[i].type == type ? (battr_t *)&d->attrs[i] : NULL;
    return NULL;
}
static int64_t battr_i64(const bdesc_t *d, int name, int64_t i, int64_t otherwise) {
    const battr_t *a = battr(d, name, CCUDNN_TYPE_INT64);
    return a && i < a->count ? ((const int64_t *)a->data)[i] : otherwise;
}
static int battr_i32(const bdesc_t *d, int name, int type, int otherwise) {
    const battr_t *a = battr(d, name, type);
    return a && a->count ? ((const int32_t *)a->data)[0] : otherwise;
}
static float battr_f32(const bdesc_t *d, int name, float otherwise) {
    const battr_t *a = battr(d, name, CCUDNN_TYPE_FLOAT);
    return a && a->count ? ((const float *)a->data)[0] : otherwise;
}
/* The finalized descriptor of `kind` held by attribute `name` (element i), or NULL. */
static bdesc_t *battr_desc(const bdesc_t *d, int name, int64_t i, int kind) {
    const battr_t *a = battr(d, name, CCUDNN_TYPE_BACKEND_DESCRIPTOR);
    if (!a || i >= a->count) return NULL;
    bdesc_t *x = ((bdesc_t **)a->data)[i];
    return x && x->finalized && x->kind == kind ? x : NULL;
}
EXPORT cudnnStatus_t cudnnBackendCreateDescriptor(int kind, cudnnBackendDescriptor_t *d) {
    bdesc_t *x = calloc(1, sizeof *x);
    x->kind = kind;
    *d = x;
    return 0;
}
EXPORT cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t d) {
    bdesc_t *x = d;
    if (!x) return BAD_PARAM;
    for (int i = 0; i < x->count; i++) free(x->attrs[i].data);
    free(x);
    return 0;
}
static cudnnStatus_t set_attribute(bdesc_t *x, int name, int type, int64_t count, const void *values) {
    size_t size = battr_size(type);
    if (!x || !size || count < 0 || (count && !values)) return BAD_PARAM;
    battr_t *a = NULL;
    for (int i = 0; i < x->count; i++) if (x->attrs[i].name == name) a = &x->attrs[i];
    if (!a) {
        if (x->count == 16) return BAD_PARAM;
        a = &x->attrs[x->count++];
    } else free(a->data);
    a->name = name; a->type = type; a->count = count;
    a->data = malloc(size * (size_t)count + 1);
    if (count) memcpy(a->data, values, size * (size_t)count);
    return 0;
}
EXPORT cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t d, int name, int type, int64_t count, const void *values) {
    bdesc_t *x = d;
    if (!x || x->finalized) return BAD_PARAM;  /* cuDNN refuses changes after finalize */
    return set_attribute(x, name, type, count, values);
}
static int tensor_rank(const bdesc_t *t) { const battr_t *a = battr(t, CCUDNN_ATTR_TENSOR_DIMENSIONS, CCUDNN_TYPE_INT64); return a ? (int)a->count : 0; }
static int64_t dim(const bdesc_t *t, int i) { return battr_i64(t, CCUDNN_ATTR_TENSOR_DIMENSIONS, i, 0); }
static int64_t stride(const bdesc_t *t, int i) { return battr_i64(t, CCUDNN_ATTR_TENSOR_STRIDES, i, 0); }
/* 1 or 2 operands for the pointwise modes this emulator runs, 0 for the others. */
static int pointwise_arity(int mode) {
    switch (mode) {
    case CCUDNN_POINTWISE_ADD: case CCUDNN_POINTWISE_SUB: case CCUDNN_POINTWISE_MUL: case CCUDNN_POINTWISE_DIV: return 2;
    case CCUDNN_POINTWISE_EXP: case CCUDNN_POINTWISE_LOG: return 1;
    default: return 0;
    }
}
static int finalize_check(bdesc_t *x) {
    switch (x->kind) {
    case CCUDNN_BACKEND_TENSOR_DESCRIPTOR: {
        const battr_t *dims = battr(x, CCUDNN_ATTR_TENSOR_DIMENSIONS, CCUDNN_TYPE_INT64);
        const battr_t *strides = battr(x, CCUDNN_ATTR_TENSOR_STRIDES, CCUDNN_TYPE_INT64);
        if (!battr(x, CCUDNN_ATTR_TENSOR_DATA_TYPE, CCUDNN_TYPE_DATA_TYPE) || !dims || !strides || dims->count != strides->count
            || dims->count < 1 || dims->count > 8 || !battr(x, CCUDNN_ATTR_TENSOR_UNIQUE_ID, CCUDNN_TYPE_INT64)) return BAD_PARAM;
        for (int i = 0; i < dims->count; i++) if (dim(x, i) < 1 || stride(x, i) < 0) return BAD_PARAM;
        return 0;
    }
    case CCUDNN_BACKEND_CONVOLUTION_DESCRIPTOR: {
        int64_t n = battr_i64(x, CCUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, 0, 0);
        if (n != 2 || !battr(x, CCUDNN_ATTR_CONVOLUTION_COMP_TYPE, CCUDNN_TYPE_DATA_TYPE)
            || battr_i32(x, CCUDNN_ATTR_CONVOLUTION_CONV_MODE, CCUDNN_TYPE_CONVOLUTION_MODE, -1) < 0) return BAD_PARAM;
        const int names[] = {CCUDNN_ATTR_CONVOLUTION_DILATIONS, CCUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CCUDNN_ATTR_CONVOLUTION_PRE_PADDINGS,
                             CCUDNN_ATTR_CONVOLUTION_POST_PADDINGS};
        for (int i = 0; i < 4; i++) { const battr_t *a = battr(x, names[i], CCUDNN_TYPE_INT64); if (!a || a->count != n) return BAD_PARAM; }
        return 0;
    }
    case CCUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR: {
        bdesc_t *t[3];
        const int names[] = {CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
                             CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y};
        for (int i = 0; i < 3; i++) if (!(t[i] = battr_desc(x, names[i], 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR)) || tensor_rank(t[i]) != 4) return BAD_PARAM;
        bdesc_t *c = battr_desc(x, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, 0, CCUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
        if (!c) return BAD_PARAM;
        /* x [n, c, h, w], w [k, c, r, s], y [n, k, p, q] */
        if (dim(t[1], 1) != dim(t[0], 1) || dim(t[2], 0) != dim(t[0], 0) || dim(t[2], 1) != dim(t[1], 0)) return BAD_PARAM;
        for (int i = 0; i < 2; i++) {
            int64_t pre = battr_i64(c, CCUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, i, 0), post = battr_i64(c, CCUDNN_ATTR_CONVOLUTION_POST_PADDINGS, i, 0);
            int64_t st = battr_i64(c, CCUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, i, 1), dil = battr_i64(c, CCUDNN_ATTR_CONVOLUTION_DILATIONS, i, 1);
            if (dim(t[2], 2 + i) != (dim(t[0], 2 + i) + pre + post - dil * (dim(t[1], 2 + i) - 1) - 1) / st + 1) return BAD_PARAM;
        }
        return 0;
    }
    case CCUDNN_BACKEND_POINTWISE_DESCRIPTOR: {
        if (!battr(x, CCUDNN_ATTR_POINTWISE_MATH_PREC, CCUDNN_TYPE_DATA_TYPE)) return BAD_PARAM;
        int mode = battr_i32(x, CCUDNN_ATTR_POINTWISE_MODE, CCUDNN_TYPE_POINTWISE_MODE, -1);
        return pointwise_arity(mode) ? 0 : NOT_SUPPORTED;
    }
    case CCUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR: {
        bdesc_t *pw = battr_desc(x, CCUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, 0, CCUDNN_BACKEND_POINTWISE_DESCRIPTOR);
        bdesc_t *a = battr_desc(x, CCUDNN_ATTR_OPERATION_POINTWISE_XDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
        bdesc_t *b = battr_desc(x, CCUDNN_ATTR_OPERATION_POINTWISE_BDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
        bdesc_t *y = battr_desc(x, CCUDNN_ATTR_OPERATION_POINTWISE_YDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
        if (!pw || !a || !y || tensor_rank(a) != 4 || tensor_rank(y) != 4) return BAD_PARAM;
        int binary = pointwise_arity(battr_i32(pw, CCUDNN_ATTR_POINTWISE_MODE, CCUDNN_TYPE_POINTWISE_MODE, -1)) == 2;
        if (binary != (b != NULL) || (b && tensor_rank(b) != 4)) return BAD_PARAM;
        for (int i = 0; i < 4; i++) if (dim(a, i) != dim(y, i) || (b && dim(b, i) != dim(y, i) && dim(b, i) != 1)) return BAD_PARAM;
        return 0;
    }
    case CCUDNN_BACKEND_MATMUL_DESCRIPTOR:
        return battr(x, CCUDNN_ATTR_MATMUL_COMP_TYPE, CCUDNN_TYPE_DATA_TYPE) ? 0 : BAD_PARAM;
    case CCUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR: {
        /* a [.., .., m, k] · b [.., .., k, n] = c [.., .., m, n], batch dimensions equal or 1 in a and b */
        bdesc_t *a = battr_desc(x, CCUDNN_ATTR_OPERATION_MATMUL_ADESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
        bdesc_t *b = battr_desc(x, CCUDNN_ATTR_OPERATION_MATMUL_BDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
        bdesc_t *c = battr_desc(x, CCUDNN_ATTR_OPERATION_MATMUL_CDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
        if (!a || !b || !c || !battr_desc(x, CCUDNN_ATTR_OPERATION_MATMUL_DESC, 0, CCUDNN_BACKEND_MATMUL_DESCRIPTOR)) return BAD_PARAM;
        if (tensor_rank(a) != 4 || tensor_rank(b) != 4 || tensor_rank(c) != 4) return BAD_PARAM;
        if (dim(a, 2) != dim(c, 2) || dim(b, 3) != dim(c, 3) || dim(a, 3) != dim(b, 2)) return BAD_PARAM;
        for (int i = 0; i < 2; i++)
            if ((dim(a, i) != dim(c, i) && dim(a, i) != 1) || (dim(b, i) != dim(c, i) && dim(b, i) != 1)) return BAD_PARAM;
        return 0;
    }
    case CCUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR: {
        /* q [b, h, n, d], k [b, h, m, d], v [b, h, m, dv], o [b, h, n, dv]; the scale optional (1) */
        const int names[] = {CCUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CCUDNN_ATTR_OPERATION_SDPA_FWD_KDESC,
                             CCUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CCUDNN_ATTR_OPERATION_SDPA_FWD_ODESC};
        bdesc_t *t[4];
        for (int i = 0; i < 4; i++) if (!(t[i] = battr_desc(x, names[i], 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR)) || tensor_rank(t[i]) != 4) return BAD_PARAM;
        for (int i = 0; i < 2; i++) if (dim(t[1], i) != dim(t[0], i) || dim(t[2], i) != dim(t[0], i) || dim(t[3], i) != dim(t[0], i)) return BAD_PARAM;
        if (dim(t[1], 3) != dim(t[0], 3) || dim(t[2], 2) != dim(t[1], 2) || dim(t[3], 2) != dim(t[0], 2) || dim(t[3], 3) != dim(t[2], 3))
            return BAD_PARAM;
        return 0;
    }
    case CCUDNN_BACKEND_REDUCTION_DESCRIPTOR: {
        int op = battr_i32(x, CCUDNN_ATTR_REDUCTION_OPERATOR, CCUDNN_TYPE_REDUCTION_OPERATOR_TYPE, -1);
        if (!battr(x, CCUDNN_ATTR_REDUCTION_COMP_TYPE, CCUDNN_TYPE_DATA_TYPE) || op < 0) return BAD_PARAM;
        return op == CCUDNN_REDUCE_TENSOR_ADD || op == CCUDNN_REDUCE_TENSOR_MAX ? 0 : NOT_SUPPORTED;
    }
    case CCUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR: {
        bdesc_t *a = battr_desc(x, CCUDNN_ATTR_OPERATION_REDUCTION_XDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
        bdesc_t *y = battr_desc(x, CCUDNN_ATTR_OPERATION_REDUCTION_YDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
        if (!a || !y || !battr_desc(x, CCUDNN_ATTR_OPERATION_REDUCTION_DESC, 0, CCUDNN_BACKEND_REDUCTION_DESCRIPTOR)) return BAD_PARAM;
        if (tensor_rank(a) != 4 || tensor_rank(y) != 4) return BAD_PARAM;
        for (int i = 0; i < 4; i++) if (dim(y, i) != dim(a, i) && dim(y, i) != 1) return BAD_PARAM;
        return 0;
    }
    case CCUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: {
        const battr_t *ops = battr(x, CCUDNN_ATTR_OPERATIONGRAPH_OPS, CCUDNN_TYPE_BACKEND_DESCRIPTOR);
        if (!battr(x, CCUDNN_ATTR_OPERATIONGRAPH_HANDLE, CCUDNN_TYPE_HANDLE) || !ops || ops->count < 1) return BAD_PARAM;
        for (int64_t i = 0; i < ops->count; i++) {
            const bdesc_t *op = ((bdesc_t **)ops->data)[i];
            if (!op || !op->finalized) return BAD_PARAM;
            if (op->kind != CCUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR && op->kind != CCUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR
                && op->kind != CCUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR && op->kind != CCUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR
                && op->kind != CCUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR)
                return NOT_SUPPORTED;
        }
        return 0;
    }
    case CCUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR:
        return battr_desc(x, CCUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, 0, CCUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)
            && battr(x, CCUDNN_ATTR_ENGINEHEUR_MODE, CCUDNN_TYPE_HEUR_MODE) ? 0 : BAD_PARAM;
    case CCUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR:
        return battr(x, CCUDNN_ATTR_EXECUTION_PLAN_HANDLE, CCUDNN_TYPE_HANDLE)
            && battr_desc(x, CCUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, 0, CCUDNN_BACKEND_ENGINECFG_DESCRIPTOR) ? 0 : BAD_PARAM;
    case CCUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: {
        const battr_t *ids = battr(x, CCUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CCUDNN_TYPE_INT64);
        const battr_t *pointers = battr(x, CCUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CCUDNN_TYPE_VOID_PTR);
        return ids && pointers && ids->count == pointers->count && ids->count <= 8
            && battr(x, CCUDNN_ATTR_VARIANT_PACK_WORKSPACE, CCUDNN_TYPE_VOID_PTR) ? 0 : BAD_PARAM;
    }
    default: return NOT_SUPPORTED;  /* engine configurations are filled by the heuristics, not finalized */
    }
}
EXPORT cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t d) {
    bdesc_t *x = d;
    if (!x || x->finalized) return BAD_PARAM;
    int status = finalize_check(x);
    if (status == 0) x->finalized = 1;
    return status;
}
EXPORT cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t d, int name, int type, int64_t requested, int64_t *count,
                                              void *values) {
    bdesc_t *x = d;
    if (!x || !x->finalized || !count) return BAD_PARAM;
    if (x->kind == CCUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR && name == CCUDNN_ATTR_ENGINEHEUR_RESULTS && type == CCUDNN_TYPE_BACKEND_DESCRIPTOR) {
        /* Two configurations (the same engine), so that a caller's choice among several runs. */
        *count = requested < 2 ? (requested < 1 ? 2 : requested) : 2;
        bdesc_t *graph = battr_desc(x, CCUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, 0, CCUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
        for (int64_t i = 0; i < requested && i < 2; i++) {
            bdesc_t *config = values ? ((bdesc_t **)values)[i] : NULL;
            if (!config || config->kind != CCUDNN_BACKEND_ENGINECFG_DESCRIPTOR) return BAD_PARAM;
            set_attribute(config, ENGINECFG_GRAPH, CCUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
            config->finalized = 1;
        }
        return 0;
    }
    if (x->kind == CCUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR && name == CCUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE && type == CCUDNN_TYPE_INT64) {
        *count = 1;
        if (requested >= 1) *(int64_t *)values = 4096;  /* some workspace, so that the caller's allocation path runs */
        return 0;
    }
    return NOT_SUPPORTED;
}
/* One execution: the graph, the variant pack's (id, pointer) pairs (the pack is destroyed after the call)
 * and the values of its by-value scalars. */
typedef struct { const bdesc_t *graph; int count; int64_t ids[8]; void *pointers[8]; int byValue[8]; uint64_t values[8]; } graph_call_t;
static int is_by_value(const bdesc_t *t) {
    const battr_t *v = battr(t, CCUDNN_ATTR_TENSOR_IS_BY_VALUE, CCUDNN_TYPE_BOOLEAN);
    return v && v->count && ((const char *)v->data)[0];
}
/* The tensor with unique id `id` among the graph's operations' tensors, or NULL. */
static const bdesc_t *graph_tensor(const bdesc_t *graph, int64_t id) {
    const battr_t *ops = battr(graph, CCUDNN_ATTR_OPERATIONGRAPH_OPS, CCUDNN_TYPE_BACKEND_DESCRIPTOR);
    for (int64_t o = 0; ops && o < ops->count; o++) {
        const bdesc_t *op = ((bdesc_t **)ops->data)[o];
        for (int a = 0; a < op->count; a++) {
            if (op->attrs[a].type != CCUDNN_TYPE_BACKEND_DESCRIPTOR) continue;
            for (int64_t e = 0; e < op->attrs[a].count; e++) {
                const bdesc_t *t = ((bdesc_t **)op->attrs[a].data)[e];
                if (t && t->kind == CCUDNN_BACKEND_TENSOR_DESCRIPTOR && battr_i64(t, CCUDNN_ATTR_TENSOR_UNIQUE_ID, 0, -1) == id) return t;
            }
        }
    }
    return NULL;
}
typedef struct { int64_t id; void *data; } scratch_t;
static void *tensor_data(const graph_call_t *c, const bdesc_t *t, scratch_t *scratch, int *scratchCount) {
    int64_t id = battr_i64(t, CCUDNN_ATTR_TENSOR_UNIQUE_ID, 0, -1);
    const battr_t *v = battr(t, CCUDNN_ATTR_TENSOR_IS_VIRTUAL, CCUDNN_TYPE_BOOLEAN);
    if (!(v && v->count && ((const char *)v->data)[0])) {
        for (int i = 0; i < c->count; i++) if (c->ids[i] == id) return c->byValue[i] ? (void *)&c->values[i] : c->pointers[i];
        fprintf(stderr, "emulated cuDNN: no pointer for tensor %lld in the variant pack\n", (long long)id);
        abort();
    }
    for (int i = 0; i < *scratchCount; i++) if (scratch[i].id == id) return scratch[i].data;
    if (*scratchCount == 16) { fprintf(stderr, "emulated cuDNN: more than 16 virtual tensors in a graph\n"); abort(); }
    int64_t extent = 1;  /* elements up to the last one addressed */
    for (int i = 0; i < tensor_rank(t); i++) extent += (dim(t, i) - 1) * stride(t, i);
    scratch[*scratchCount] = (scratch_t){id, calloc((size_t)extent, 4)};
    return scratch[(*scratchCount)++].data;
}
static int tensor_type(const bdesc_t *t) { return dnn_type(battr_i32(t, CCUDNN_ATTR_TENSOR_DATA_TYPE, CCUDNN_TYPE_DATA_TYPE, 0)); }
/* Dimensions and strides of a 4-D tensor, read once per operation (the loops below index through them). */
typedef struct { int64_t d[4], s[4]; } shape4_t;
static shape4_t shape_of(const bdesc_t *t) {
    shape4_t r = {{1, 1, 1, 1}, {0, 0, 0, 0}};
    for (int i = 0; t && i < 4 && i < tensor_rank(t); i++) { r.d[i] = dim(t, i); r.s[i] = stride(t, i); }
    return r;
}
#define dim(t, i) (t##_s.d[(i)])
#define offset4(t, a, b, c, e) ((a) * t##_s.s[0] + (b) * t##_s.s[1] + (c) * t##_s.s[2] + (e) * t##_s.s[3])
static void run_graph(void *argument) {
    const graph_call_t *c = argument;
    const battr_t *ops = battr(c->graph, CCUDNN_ATTR_OPERATIONGRAPH_OPS, CCUDNN_TYPE_BACKEND_DESCRIPTOR);
    scratch_t scratch[16];
    int scratchCount = 0;
    for (int64_t o = 0; o < ops->count; o++) {
        const bdesc_t *op = ((bdesc_t **)ops->data)[o];
        if (op->kind == CCUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR) {
            const bdesc_t *xt = battr_desc(op, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *wt = battr_desc(op, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *yt = battr_desc(op, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *cv = battr_desc(op, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, 0, CCUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
            const shape4_t xt_s = shape_of(xt); const shape4_t wt_s = shape_of(wt); const shape4_t yt_s = shape_of(yt);
            const void *x = tensor_data(c, xt, scratch, &scratchCount), *w = tensor_data(c, wt, scratch, &scratchCount);
            void *y = tensor_data(c, yt, scratch, &scratchCount);
            const int tx = tensor_type(xt), tw = tensor_type(wt), ty = tensor_type(yt);
            const float alpha = battr_f32(op, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, 1);
            const float beta = battr_f32(op, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, 0);
            int64_t pad[2], st[2], dil[2];
            for (int i = 0; i < 2; i++) {
                pad[i] = battr_i64(cv, CCUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, i, 0);
                st[i] = battr_i64(cv, CCUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, i, 1);
                dil[i] = battr_i64(cv, CCUDNN_ATTR_CONVOLUTION_DILATIONS, i, 1);
            }
            for (int64_t n = 0; n < dim(yt, 0); n++)
                for (int64_t k = 0; k < dim(yt, 1); k++)
                    for (int64_t p = 0; p < dim(yt, 2); p++)
                        for (int64_t q = 0; q < dim(yt, 3); q++) {
                            float sum = 0.0f;
                            for (int64_t r = 0; r < dim(wt, 2); r++) {
                                int64_t h = p * st[0] - pad[0] + r * dil[0];
                                if (h < 0 || h >= dim(xt, 2)) continue;
                                for (int64_t s = 0; s < dim(wt, 3); s++) {
                                    int64_t v = q * st[1] - pad[1] + s * dil[1];
                                    if (v < 0 || v >= dim(xt, 3)) continue;
                                    for (int64_t ch = 0; ch < dim(xt, 1); ch++)
                                        sum += load(x, offset4(xt, n, ch, h, v), tx) * load(w, offset4(wt, k, ch, r, s), tw);
                                }
                            }
                            int64_t yi = offset4(yt, n, k, p, q);
                            store(y, yi, ty, alpha * sum + (beta != 0.0f ? beta * load(y, yi, ty) : 0.0f));
                        }
        } else if (op->kind == CCUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR) {  /* batch dims broadcast from 1 */
            const bdesc_t *at = battr_desc(op, CCUDNN_ATTR_OPERATION_MATMUL_ADESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *bt = battr_desc(op, CCUDNN_ATTR_OPERATION_MATMUL_BDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *ct = battr_desc(op, CCUDNN_ATTR_OPERATION_MATMUL_CDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const shape4_t at_s = shape_of(at); const shape4_t bt_s = shape_of(bt); const shape4_t ct_s = shape_of(ct);
            const void *a = tensor_data(c, at, scratch, &scratchCount), *b = tensor_data(c, bt, scratch, &scratchCount);
            void *y = tensor_data(c, ct, scratch, &scratchCount);
            const int ta = tensor_type(at), tb = tensor_type(bt), ty = tensor_type(ct);
            for (int64_t i0 = 0; i0 < dim(ct, 0); i0++)
                for (int64_t i1 = 0; i1 < dim(ct, 1); i1++) {
                    int64_t a0 = dim(at, 0) == 1 ? 0 : i0, a1 = dim(at, 1) == 1 ? 0 : i1;
                    int64_t b0 = dim(bt, 0) == 1 ? 0 : i0, b1 = dim(bt, 1) == 1 ? 0 : i1;
                    for (int64_t m = 0; m < dim(ct, 2); m++)
                        for (int64_t n = 0; n < dim(ct, 3); n++) {
                            float sum = 0.0f;
                            for (int64_t k = 0; k < dim(at, 3); k++)
                                sum += load(a, offset4(at, a0, a1, m, k), ta) * load(b, offset4(bt, b0, b1, k, n), tb);
                            store(y, offset4(ct, i0, i1, m, n), ty, sum);
                        }
                }
        } else if (op->kind == CCUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR) {  /* softmax(scale·q·kᵀ)·v per (b, h, query) */
            const bdesc_t *qt = battr_desc(op, CCUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *kt = battr_desc(op, CCUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *vt = battr_desc(op, CCUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *ot = battr_desc(op, CCUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *st = battr_desc(op, CCUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const shape4_t qt_s = shape_of(qt), kt_s = shape_of(kt), vt_s = shape_of(vt), ot_s = shape_of(ot);
            const void *q = tensor_data(c, qt, scratch, &scratchCount), *k = tensor_data(c, kt, scratch, &scratchCount);
            const void *v = tensor_data(c, vt, scratch, &scratchCount);
            void *o = tensor_data(c, ot, scratch, &scratchCount);
            const float scale = st ? load(tensor_data(c, st, scratch, &scratchCount), 0, tensor_type(st)) : 1.0f;
            const int tq = tensor_type(qt), tk = tensor_type(kt), tv = tensor_type(vt), to = tensor_type(ot);
            float *p = malloc(sizeof(float) * (size_t)dim(kt, 2));
            for (int64_t b = 0; b < dim(qt, 0); b++)
                for (int64_t h = 0; h < dim(qt, 1); h++)
                    for (int64_t n = 0; n < dim(qt, 2); n++) {
                        float top = -INFINITY, sum = 0.0f;
                        for (int64_t m = 0; m < dim(kt, 2); m++) {
                            float s = 0.0f;
                            for (int64_t e = 0; e < dim(qt, 3); e++)
                                s += load(q, offset4(qt, b, h, n, e), tq) * load(k, offset4(kt, b, h, m, e), tk);
                            p[m] = scale * s;
                            if (p[m] > top) top = p[m];
                        }
                        for (int64_t m = 0; m < dim(kt, 2); m++) { p[m] = expf(p[m] - top); sum += p[m]; }
                        for (int64_t e = 0; e < dim(vt, 3); e++) {
                            float acc = 0.0f;
                            for (int64_t m = 0; m < dim(kt, 2); m++) acc += p[m] * load(v, offset4(vt, b, h, m, e), tv);
                            store(o, offset4(ot, b, h, n, e), to, acc / sum);
                        }
                    }
            free(p);
        } else if (op->kind == CCUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR) {  /* over the dims where y has 1 */
            const bdesc_t *at = battr_desc(op, CCUDNN_ATTR_OPERATION_REDUCTION_XDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *yt = battr_desc(op, CCUDNN_ATTR_OPERATION_REDUCTION_YDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *rd = battr_desc(op, CCUDNN_ATTR_OPERATION_REDUCTION_DESC, 0, CCUDNN_BACKEND_REDUCTION_DESCRIPTOR);
            const shape4_t at_s = shape_of(at); const shape4_t yt_s = shape_of(yt);
            const int isMax = battr_i32(rd, CCUDNN_ATTR_REDUCTION_OPERATOR, CCUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 0) == CCUDNN_REDUCE_TENSOR_MAX;
            const void *a = tensor_data(c, at, scratch, &scratchCount);
            void *y = tensor_data(c, yt, scratch, &scratchCount);
            const int ta = tensor_type(at), ty = tensor_type(yt);
            int64_t i[4];
            for (i[0] = 0; i[0] < dim(yt, 0); i[0]++)
                for (i[1] = 0; i[1] < dim(yt, 1); i[1]++)
                    for (i[2] = 0; i[2] < dim(yt, 2); i[2]++)
                        for (i[3] = 0; i[3] < dim(yt, 3); i[3]++) {
                            float acc = isMax ? -INFINITY : 0.0f;
                            int64_t e[4], n[4];
                            for (int d = 0; d < 4; d++) n[d] = dim(yt, d) == 1 ? dim(at, d) : 1;
                            for (e[0] = 0; e[0] < n[0]; e[0]++)
                                for (e[1] = 0; e[1] < n[1]; e[1]++)
                                    for (e[2] = 0; e[2] < n[2]; e[2]++)
                                        for (e[3] = 0; e[3] < n[3]; e[3]++) {
                                            int64_t j[4];
                                            for (int d = 0; d < 4; d++) j[d] = dim(yt, d) == 1 ? e[d] : i[d];
                                            float v = load(a, offset4(at, j[0], j[1], j[2], j[3]), ta);
                                            acc = isMax ? (v > acc ? v : acc) : acc + v;
                                        }
                            store(y, offset4(yt, i[0], i[1], i[2], i[3]), ty, acc);
                        }
        } else {  /* pointwise; b (binary modes) broadcast over its size-1 dimensions */
            const bdesc_t *pw = battr_desc(op, CCUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, 0, CCUDNN_BACKEND_POINTWISE_DESCRIPTOR);
            const int mode = battr_i32(pw, CCUDNN_ATTR_POINTWISE_MODE, CCUDNN_TYPE_POINTWISE_MODE, 0);
            const bdesc_t *at = battr_desc(op, CCUDNN_ATTR_OPERATION_POINTWISE_XDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *bt = battr_desc(op, CCUDNN_ATTR_OPERATION_POINTWISE_BDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const bdesc_t *yt = battr_desc(op, CCUDNN_ATTR_OPERATION_POINTWISE_YDESC, 0, CCUDNN_BACKEND_TENSOR_DESCRIPTOR);
            const shape4_t at_s = shape_of(at); const shape4_t bt_s = shape_of(bt); const shape4_t yt_s = shape_of(yt);
            const void *a = tensor_data(c, at, scratch, &scratchCount), *b = bt ? tensor_data(c, bt, scratch, &scratchCount) : NULL;
            void *y = tensor_data(c, yt, scratch, &scratchCount);
            const int ta = tensor_type(at), tb = bt ? tensor_type(bt) : T_F32, ty = tensor_type(yt);
            int64_t i[4];
            for (i[0] = 0; i[0] < dim(yt, 0); i[0]++)
                for (i[1] = 0; i[1] < dim(yt, 1); i[1]++)
                    for (i[2] = 0; i[2] < dim(yt, 2); i[2]++)
                        for (i[3] = 0; i[3] < dim(yt, 3); i[3]++) {
                            float u = load(a, offset4(at, i[0], i[1], i[2], i[3]), ta), w = 0.0f, v;
                            if (bt) {
                                int64_t j[4];
                                for (int d = 0; d < 4; d++) j[d] = dim(bt, d) == 1 ? 0 : i[d];
                                w = load(b, offset4(bt, j[0], j[1], j[2], j[3]), tb);
                            }
                            switch (mode) {
                            case CCUDNN_POINTWISE_ADD: v = u + w; break;
                            case CCUDNN_POINTWISE_SUB: v = u - w; break;
                            case CCUDNN_POINTWISE_MUL: v = u * w; break;
                            case CCUDNN_POINTWISE_DIV: v = u / w; break;
                            case CCUDNN_POINTWISE_EXP: v = expf(u); break;
                            default: v = logf(u); break;  /* LOG (finalize refused the rest) */
                            }
                            store(y, offset4(yt, i[0], i[1], i[2], i[3]), ty, v);
                        }
        }
    }
    for (int i = 0; i < scratchCount; i++) free(scratch[i].data);
}
#undef dim
#undef offset4

EXPORT cudnnStatus_t cudnnBackendExecute(cudnnHandle_t h, cudnnBackendDescriptor_t plan, cudnnBackendDescriptor_t pack) {
    (void)h;
    const bdesc_t *p = plan, *v = pack;
    if (!p || !v || !p->finalized || !v->finalized || p->kind != CCUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR
        || v->kind != CCUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR) return BAD_PARAM;
    const bdesc_t *config = battr_desc(p, CCUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, 0, CCUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    graph_call_t call = {0};
    call.graph = battr_desc(config, ENGINECFG_GRAPH, 0, CCUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    const battr_t *ids = battr(v, CCUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CCUDNN_TYPE_INT64);
    const battr_t *pointers = battr(v, CCUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CCUDNN_TYPE_VOID_PTR);
    call.count = (int)ids->count;
    memcpy(call.ids, ids->data, sizeof(int64_t) * (size_t)call.count);
    memcpy(call.pointers, pointers->data, sizeof(void *) * (size_t)call.count);
    if (!call.graph) return BAD_PARAM;
    for (int i = 0; i < call.count; i++) {
        const bdesc_t *t = graph_tensor(call.graph, call.ids[i]);
        if (!t) return BAD_PARAM;  /* an id the graph does not have */
        if ((call.byValue[i] = is_by_value(t)) != 0) {
            if (!call.pointers[i]) return BAD_PARAM;
            memcpy(&call.values[i], call.pointers[i], tensor_type(t) == T_F32 ? 4 : 2);
        }
    }
    if (recording) { graph_call_t *r = malloc(sizeof call); *r = call; record(run_graph, r); } else run_graph(&call);
    return 0;
}
