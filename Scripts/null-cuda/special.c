/* The null CUDA entry points that must return something: a device (H100-like: sm_90, 132 SMs),
 * handles, device addresses (never dereferenced), one heuristic answer per GEMM and convolution,
 * an NVRTC "compilation" whose lowered names are the name expressions, cuDNN graph-API plans. */
#define DEVICE_NAME "null CUDA device"
#define MULTIPROCESSORS 132  /* H100-sized grids */
#include "device.h"
static CUdeviceptr next_address = 0x100000000ULL;

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

EXPORT cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, int c, int s) { (void)c; (void)s; *d = (cublasLtMatmulDesc_t)(dummy + 9); return 0; }
EXPORT cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, int t, uint64_t r, uint64_t c, int64_t ld) {
    (void)t; (void)r; (void)c; (void)ld; *l = (cublasLtMatrixLayout_t)(dummy + 10); return 0;
}

EXPORT const char *cudnnGetErrorString(cudnnStatus_t s) { (void)s; return "null cuDNN"; }
EXPORT cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) { *d = (cudnnTensorDescriptor_t)(dummy + 13); return 0; }
EXPORT cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) { *d = (cudnnFilterDescriptor_t)(dummy + 14); return 0; }
EXPORT cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) { *d = (cudnnConvolutionDescriptor_t)(dummy + 15); return 0; }
EXPORT const char *nvrtcGetErrorString(nvrtcResult r) { (void)r; return "null NVRTC"; }
EXPORT nvrtcResult nvrtcCreateProgram(nvrtcProgram *p, const char *src, const char *name, int n, const char *const *h, const char *const *i) {
    (void)src; (void)name; (void)n; (void)h; (void)i; *p = (nvrtcProgram)(dummy + 17); return 0;
}
EXPORT nvrtcResult nvrtcGetCUBINSize(nvrtcProgram p, size_t *s) { (void)p; *s = 16; return 0; }
EXPORT nvrtcResult nvrtcGetProgramLogSize(nvrtcProgram p, size_t *s) { (void)p; *s = 1; return 0; }
/* cuDNN's graph API: descriptors that are never dereferenced, one engine configuration per graph, no
 * workspace, so that plans are made and executed (as no-ops) and the host cost of the path shows. */
EXPORT cudnnStatus_t cudnnBackendCreateDescriptor(int kind, cudnnBackendDescriptor_t *d) { (void)kind; *d = dummy + 20; return 0; }
EXPORT cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t d, int name, int type, int64_t requested, int64_t *count,
                                              void *values) {
    (void)d; (void)type;
    *count = 1;
    if (name == CCUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE && requested >= 1) *(int64_t *)values = 0;
    return 0;
}
