/* The null CUDA entry points that must return something: a device (H100-like: sm_90, 132 SMs),
 * handles, device addresses (never dereferenced), one heuristic answer per GEMM and convolution,
 * an NVRTC "compilation" whose lowered names are the name expressions. */
#include <stdlib.h>
#include <string.h>
#include "CCUDA.h"

#define EXPORT __attribute__((visibility("default")))
static char dummy[64];
static CUdeviceptr next_address = 0x100000000ULL;

EXPORT CUresult cuDriverGetVersion(int *v) { *v = 13000; return 0; }
EXPORT CUresult cuDeviceGetCount(int *c) { *c = 1; return 0; }
EXPORT CUresult cuDeviceGetName(char *name, int length, CUdevice d) { (void)d; strncpy(name, "null CUDA device", (size_t)length); return 0; }
EXPORT CUresult cuDeviceGetAttribute(int *v, int a, CUdevice d) {
    (void)d;
    switch (a) {
    case CCUDA_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = 132; break;
    case CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = 9; break;
    case CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = 0; break;
    case CCUDA_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *v = 227 * 1024; break;
    case CCUDA_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: *v = 1; break;
    default: *v = 1;
    }
    return 0;
}
EXPORT CUresult cuDeviceTotalMem_v2(size_t *b, CUdevice d) { (void)d; *b = (size_t)80 << 30; return 0; }
EXPORT CUresult cuMemGetInfo_v2(size_t *f, size_t *t) { *f = (size_t)70 << 30; *t = (size_t)80 << 30; return 0; }
EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) { (void)d; *c = (CUcontext)dummy; return 0; }
EXPORT CUresult cuStreamCreate(CUstream *s, unsigned f) { (void)f; *s = (CUstream)(dummy + 1); return 0; }
EXPORT CUresult cuEventCreate(CUevent *e, unsigned f) { (void)f; *e = (CUevent)(dummy + 2); return 0; }
EXPORT CUresult cuEventElapsedTime(float *ms, CUevent a, CUevent b) { (void)a; (void)b; *ms = 1.0f; return 0; }
EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *p, CUdevice d) { (void)d; *p = (CUmemoryPool)(dummy + 3); return 0; }
EXPORT CUresult cuMemAllocAsync(CUdeviceptr *p, size_t bytes, CUstream s) {
    (void)s;
    *p = next_address;
    next_address += (bytes + 511) & ~(CUdeviceptr)511;
    return 0;
}
EXPORT CUresult cuModuleLoadData(CUmodule *m, const void *image) { (void)image; *m = (CUmodule)(dummy + 4); return 0; }
EXPORT CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *n) { (void)m; (void)n; *f = (CUfunction)(dummy + 5); return 0; }
EXPORT CUresult cuStreamEndCapture(CUstream s, CUgraph *g) { (void)s; *g = (CUgraph)(dummy + 6); return 0; }
EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec *e, CUgraph g, unsigned long long f) { (void)g; (void)f; *e = (CUgraphExec)(dummy + 7); return 0; }

EXPORT cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = (cublasLtHandle_t)(dummy + 8); return 0; }
EXPORT size_t cublasLtGetVersion(void) { return 130000; }
EXPORT cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, int c, int s) { (void)c; (void)s; *d = (cublasLtMatmulDesc_t)(dummy + 9); return 0; }
EXPORT cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, int t, uint64_t r, uint64_t c, int64_t ld) {
    (void)t; (void)r; (void)c; (void)ld; *l = (cublasLtMatrixLayout_t)(dummy + 10); return 0;
}
EXPORT cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) { *p = (cublasLtMatmulPreference_t)(dummy + 11); return 0; }
EXPORT cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                                     cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                                     cublasLtMatmulPreference_t p, int requested, cublasLtMatmulHeuristicResult_t *r,
                                                     int *returned) {
    (void)h; (void)d; (void)a; (void)b; (void)c; (void)dd; (void)p;
    int n = requested < 2 ? requested : 2;
    memset(r, 0, sizeof *r * (size_t)n);
    *returned = n;
    return 0;
}

EXPORT size_t cudnnGetVersion(void) { return 91400; }
EXPORT const char *cudnnGetErrorString(cudnnStatus_t s) { (void)s; return "null cuDNN"; }
EXPORT cudnnStatus_t cudnnCreate(cudnnHandle_t *h) { *h = (cudnnHandle_t)(dummy + 12); return 0; }
EXPORT cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) { *d = (cudnnTensorDescriptor_t)(dummy + 13); return 0; }
EXPORT cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) { *d = (cudnnFilterDescriptor_t)(dummy + 14); return 0; }
EXPORT cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) { *d = (cudnnConvolutionDescriptor_t)(dummy + 15); return 0; }
EXPORT cudnnStatus_t cudnnCreateActivationDescriptor(cudnnActivationDescriptor_t *d) { *d = (cudnnActivationDescriptor_t)(dummy + 16); return 0; }
static cudnnStatus_t one_algorithm(int *returned, cudnnConvolutionFwdAlgoPerf_t *r) {
    memset(r, 0, sizeof *r);
    r->algo = 1;
    r->mathType = CCUDNN_TENSOR_OP_MATH;
    *returned = 1;
    return 0;
}
EXPORT cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
                                                            cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t y, int n,
                                                            int *returned, cudnnConvolutionFwdAlgoPerf_t *r) {
    (void)h; (void)x; (void)w; (void)c; (void)y; (void)n; return one_algorithm(returned, r);
}
EXPORT cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
                                                          cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t y, int n,
                                                          int *returned, cudnnConvolutionFwdAlgoPerf_t *r) {
    (void)h; (void)x; (void)w; (void)c; (void)y; (void)n; return one_algorithm(returned, r);
}

EXPORT const char *nvrtcGetErrorString(nvrtcResult r) { (void)r; return "null NVRTC"; }
EXPORT nvrtcResult nvrtcVersion(int *major, int *minor) { *major = 13; *minor = 0; return 0; }
EXPORT nvrtcResult nvrtcCreateProgram(nvrtcProgram *p, const char *src, const char *name, int n, const char *const *h, const char *const *i) {
    (void)src; (void)name; (void)n; (void)h; (void)i; *p = (nvrtcProgram)(dummy + 17); return 0;
}
EXPORT nvrtcResult nvrtcGetCUBINSize(nvrtcProgram p, size_t *s) { (void)p; *s = 16; return 0; }
EXPORT nvrtcResult nvrtcGetLoweredName(nvrtcProgram p, const char *expression, const char **lowered) {
    (void)p; *lowered = strdup(expression); return 0;  /* kept: the caller reads it later */
}
EXPORT nvrtcResult nvrtcGetProgramLogSize(nvrtcProgram p, size_t *s) { (void)p; *s = 1; return 0; }
