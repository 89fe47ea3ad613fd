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
    char base[256], cpp[300], log[300], command[2048];
    snprintf(base, sizeof base, "%s/ssd-emulated-cuda-%d-%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid(), serial++);
    snprintf(cpp, sizeof cpp, "%s.cpp", base);
    snprintf(log, sizeof log, "%s.log", base);
    FILE *f = fopen(cpp, "w");
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
    prog->library = malloc(strlen(base) + 4);
    sprintf(prog->library, "%s.so", base);
    const char *compiler = getenv("SSD_EMULATED_CUDA_CXX") ? getenv("SSD_EMULATED_CUDA_CXX") : "c++";
    snprintf(command, sizeof command, "%s -std=c++17 -O1 -shared -fPIC -w -o %s %s > %s 2>&1", compiler, prog->library, cpp, log);
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
