/* The device, handles and plans both stand-ins report (special.c: null, emulated.c: computing): an sm_90
 * device with DEVICE_NAME and MULTIPROCESSORS (defined before including), library versions, handles
 * that are never dereferenced, two heuristic answers per GEMM, NVRTC lowered names equal to the name
 * expressions. */
#include <stdlib.h>
#include <string.h>
#include "CCUDA.h"

#define EXPORT __attribute__((visibility("default")))
static char dummy[64];

EXPORT CUresult cuDriverGetVersion(int *v) { *v = 13000; return 0; }
EXPORT CUresult cuDeviceGetCount(int *c) { *c = 1; return 0; }
EXPORT CUresult cuDeviceGetName(char *name, int length, CUdevice d) { (void)d; strncpy(name, DEVICE_NAME, (size_t)length); return 0; }
EXPORT CUresult cuDeviceGetAttribute(int *v, int a, CUdevice d) {
    (void)d;
    switch (a) {
    case CCUDA_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = MULTIPROCESSORS; break;
    case CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = 9; break;
    case CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = 0; break;
    case CCUDA_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *v = 227 * 1024; break;
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

EXPORT cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = (cublasLtHandle_t)(dummy + 8); return 0; }
EXPORT size_t cublasLtGetVersion(void) { return 130000; }
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
EXPORT cudnnStatus_t cudnnCreate(cudnnHandle_t *h) { *h = (cudnnHandle_t)(dummy + 12); return 0; }
EXPORT cudnnStatus_t cudnnCreateActivationDescriptor(cudnnActivationDescriptor_t *d) { *d = (cudnnActivationDescriptor_t)(dummy + 16); return 0; }

/* Convolution plans: implicit precomputed GEMM, once with FMA math (what fp32 asks for), once with
 * tensor-op math (fp16/bf16), from the heuristics and from the measured search alike. */
static cudnnStatus_t algorithms(int *returned, cudnnConvolutionFwdAlgoPerf_t *r) {
    /* One answer per math type: implicit precomputed GEMM with FMA math, then with tensor-op math. */
    memset(r, 0, sizeof *r * 2);
    r[0].algo = CCUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM; r[0].mathType = CCUDNN_FMA_MATH;
    r[1].algo = CCUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM; r[1].mathType = CCUDNN_TENSOR_OP_MATH;
    *returned = 2;
    return 0;
}
EXPORT cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
                                                            cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t y, int n,
                                                            int *returned, cudnnConvolutionFwdAlgoPerf_t *r) {
    (void)h; (void)x; (void)w; (void)c; (void)y; (void)n; return algorithms(returned, r);
}
EXPORT cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
                                                          cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t y, int n,
                                                          int *returned, cudnnConvolutionFwdAlgoPerf_t *r) {
    (void)h; (void)x; (void)w; (void)c; (void)y; (void)n; return algorithms(returned, r);
}

/* 13.90 (null) and 13.91 (emulated): versions no real NVRTC has, so that the kernel disk cache
 * (part of whose key is NVRTC's version) keeps the stand-ins' images apart from real ones and each other's. */
#ifdef EMULATOR_HEADER
EXPORT nvrtcResult nvrtcVersion(int *major, int *minor) { *major = 13; *minor = 91; return 0; }
#else
EXPORT nvrtcResult nvrtcVersion(int *major, int *minor) { *major = 13; *minor = 90; return 0; }
#endif
EXPORT nvrtcResult nvrtcGetLoweredName(nvrtcProgram p, const char *expression, const char **lowered) {
    (void)p; *lowered = strdup(expression); return 0;  /* kept: the caller reads it later */
}
