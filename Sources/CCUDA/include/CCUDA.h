#ifndef CCUDA_H
#define CCUDA_H
/*
 * The few CUDA driver, cuBLASLt, cuDNN 9 (legacy convolution API; graph API, optional) and NVRTC types and entry points
 * that SSDCUDABackend uses, declared here so that the package builds without any CUDA header or
 * library. The libraries are opened at run time by ccuda_load() (loader.c), which resolves every
 * symbol below and reports exactly which library or symbol is missing.
 *
 * Enum values and struct layouts match cuda.h (CUDA 12/13), cublasLt.h (12/13), cudnn_*.h (9.x)
 * and nvrtc.h (12/13).
 */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- CUDA driver API (libcuda.so.1) */
typedef int CUresult;                 /* CUDA_SUCCESS = 0 */
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUmemPoolHandle_st *CUmemoryPool;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;

enum {
    CCUDA_SUCCESS = 0,
    CCUDA_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
    CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
    CCUDA_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
    CCUDA_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED = 115,
    CCUDA_MEMPOOL_ATTR_RELEASE_THRESHOLD = 4,
    CCUDA_MEMPOOL_ATTR_RESERVED_MEM_CURRENT = 5,
    CCUDA_MEMPOOL_ATTR_USED_MEM_CURRENT = 7,
    CCUDA_STREAM_NON_BLOCKING = 1,
    CCUDA_EVENT_DEFAULT = 0,
    CCUDA_STREAM_CAPTURE_MODE_GLOBAL = 0,
    CCUDA_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
    CCUDA_STREAM_CAPTURE_MODE_RELAXED = 2,
    CCUDA_STREAM_CAPTURE_STATUS_NONE = 0,
    CCUDA_STREAM_CAPTURE_STATUS_ACTIVE = 1,
    CCUDA_STREAM_CAPTURE_STATUS_INVALIDATED = 2,
    CCUDA_GRAPH_MEM_ATTR_USED_MEM_CURRENT = 0,
    CCUDA_GRAPH_MEM_ATTR_USED_MEM_HIGH = 1,
    CCUDA_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT = 2,
    CCUDA_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH = 3,
};

/* X(return type, field name, parameter list, exported symbol) */
#define CCUDA_DRIVER_FUNCTIONS(X) \
    X(CUresult, cuInit, (unsigned int flags), "cuInit") \
    X(CUresult, cuDriverGetVersion, (int *version), "cuDriverGetVersion") \
    X(CUresult, cuGetErrorName, (CUresult error, const char **name), "cuGetErrorName") \
    X(CUresult, cuGetErrorString, (CUresult error, const char **text), "cuGetErrorString") \
    X(CUresult, cuDeviceGetCount, (int *count), "cuDeviceGetCount") \
    X(CUresult, cuDeviceGet, (CUdevice *device, int ordinal), "cuDeviceGet") \
    X(CUresult, cuDeviceGetName, (char *name, int length, CUdevice device), "cuDeviceGetName") \
    X(CUresult, cuDeviceGetAttribute, (int *value, int attribute, CUdevice device), "cuDeviceGetAttribute") \
    X(CUresult, cuDeviceTotalMem, (size_t *bytes, CUdevice device), "cuDeviceTotalMem_v2") \
    X(CUresult, cuDevicePrimaryCtxRetain, (CUcontext *context, CUdevice device), "cuDevicePrimaryCtxRetain") \
    X(CUresult, cuDevicePrimaryCtxRelease, (CUdevice device), "cuDevicePrimaryCtxRelease_v2") \
    X(CUresult, cuCtxSetCurrent, (CUcontext context), "cuCtxSetCurrent") \
    X(CUresult, cuCtxSynchronize, (void), "cuCtxSynchronize") \
    X(CUresult, cuStreamCreate, (CUstream *stream, unsigned int flags), "cuStreamCreate") \
    X(CUresult, cuStreamDestroy, (CUstream stream), "cuStreamDestroy_v2") \
    X(CUresult, cuStreamSynchronize, (CUstream stream), "cuStreamSynchronize") \
    X(CUresult, cuEventCreate, (CUevent *event, unsigned int flags), "cuEventCreate") \
    X(CUresult, cuEventDestroy, (CUevent event), "cuEventDestroy_v2") \
    X(CUresult, cuEventRecord, (CUevent event, CUstream stream), "cuEventRecord") \
    X(CUresult, cuEventSynchronize, (CUevent event), "cuEventSynchronize") \
    X(CUresult, cuEventElapsedTime, (float *milliseconds, CUevent start, CUevent end), "cuEventElapsedTime") \
    X(CUresult, cuMemGetInfo, (size_t *free, size_t *total), "cuMemGetInfo_v2") \
    X(CUresult, cuDeviceGetDefaultMemPool, (CUmemoryPool *pool, CUdevice device), "cuDeviceGetDefaultMemPool") \
    X(CUresult, cuMemPoolSetAttribute, (CUmemoryPool pool, int attribute, void *value), "cuMemPoolSetAttribute") \
    X(CUresult, cuMemPoolGetAttribute, (CUmemoryPool pool, int attribute, void *value), "cuMemPoolGetAttribute") \
    X(CUresult, cuMemPoolTrimTo, (CUmemoryPool pool, size_t keepBytes), "cuMemPoolTrimTo") \
    X(CUresult, cuMemAllocAsync, (CUdeviceptr *pointer, size_t bytes, CUstream stream), "cuMemAllocAsync") \
    X(CUresult, cuMemFreeAsync, (CUdeviceptr pointer, CUstream stream), "cuMemFreeAsync") \
    X(CUresult, cuMemcpyHtoDAsync, (CUdeviceptr dst, const void *src, size_t bytes, CUstream stream), "cuMemcpyHtoDAsync_v2") \
    X(CUresult, cuMemcpyDtoHAsync, (void *dst, CUdeviceptr src, size_t bytes, CUstream stream), "cuMemcpyDtoHAsync_v2") \
    X(CUresult, cuMemcpyDtoDAsync, (CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream), "cuMemcpyDtoDAsync_v2") \
    X(CUresult, cuMemsetD8Async, (CUdeviceptr dst, unsigned char value, size_t bytes, CUstream stream), "cuMemsetD8Async") \
    X(CUresult, cuModuleLoadData, (CUmodule *module, const void *image), "cuModuleLoadData") \
    X(CUresult, cuModuleUnload, (CUmodule module), "cuModuleUnload") \
    X(CUresult, cuModuleGetFunction, (CUfunction *function, CUmodule module, const char *name), "cuModuleGetFunction") \
    X(CUresult, cuFuncSetAttribute, (CUfunction function, int attribute, int value), "cuFuncSetAttribute") \
    X(CUresult, cuLaunchKernel, (CUfunction f, unsigned int gridX, unsigned int gridY, unsigned int gridZ, \
                                 unsigned int blockX, unsigned int blockY, unsigned int blockZ, \
                                 unsigned int sharedBytes, CUstream stream, void **params, void **extra), "cuLaunchKernel")

/*
 * CUDA graphs (stream capture), resolved separately by ccuda_load_graph_api() from the same libcuda:
 * OPTIONAL, so that a driver without them (older than CUDA 11.4) only disables graph replay.
 */
typedef struct CUgraphNode_st *CUgraphNode;
#define CCUDA_GRAPH_FUNCTIONS(X) \
    X(CUresult, cuStreamBeginCapture, (CUstream stream, int mode), "cuStreamBeginCapture_v2") \
    X(CUresult, cuStreamEndCapture, (CUstream stream, CUgraph *graph), "cuStreamEndCapture") \
    X(CUresult, cuStreamIsCapturing, (CUstream stream, int *status), "cuStreamIsCapturing") \
    X(CUresult, cuGraphInstantiateWithFlags, (CUgraphExec *exec, CUgraph graph, unsigned long long flags), "cuGraphInstantiateWithFlags") \
    X(CUresult, cuGraphUpload, (CUgraphExec exec, CUstream stream), "cuGraphUpload") \
    X(CUresult, cuGraphLaunch, (CUgraphExec exec, CUstream stream), "cuGraphLaunch") \
    X(CUresult, cuGraphExecDestroy, (CUgraphExec exec), "cuGraphExecDestroy") \
    X(CUresult, cuGraphDestroy, (CUgraph graph), "cuGraphDestroy") \
    X(CUresult, cuGraphGetNodes, (CUgraph graph, CUgraphNode *nodes, size_t *count), "cuGraphGetNodes") \
    X(CUresult, cuDeviceGetGraphMemAttribute, (CUdevice device, int attribute, void *value), "cuDeviceGetGraphMemAttribute") \
    X(CUresult, cuDeviceGraphMemTrim, (CUdevice device), "cuDeviceGraphMemTrim")

/* ---------------------------------------------------------------- cuBLASLt (libcublasLt.so.13 / .12) */
typedef int cublasStatus_t;           /* CUBLAS_STATUS_SUCCESS = 0 */
typedef struct cublasLtContext *cublasLtHandle_t;
typedef struct cublasLtMatmulDescOpaque *cublasLtMatmulDesc_t;
typedef struct cublasLtMatrixLayoutOpaque *cublasLtMatrixLayout_t;
typedef struct cublasLtMatmulPreferenceOpaque *cublasLtMatmulPreference_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

enum {
    CCUDA_R_32F = 0, CCUDA_R_16F = 2, CCUDA_R_16BF = 14,          /* cudaDataType */
    CCUBLAS_COMPUTE_32F = 68,                                     /* cublasComputeType_t */
    CCUBLAS_OP_N = 0, CCUBLAS_OP_T = 1,
    CCUBLASLT_MATMUL_DESC_TRANSA = 3, CCUBLASLT_MATMUL_DESC_TRANSB = 4,
    CCUBLASLT_MATMUL_DESC_EPILOGUE = 7, CCUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
    CCUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,
    CCUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5, CCUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6,
    CCUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CCUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5, CCUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CCUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7, CCUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
    CCUBLASLT_EPILOGUE_DEFAULT = 1, CCUBLASLT_EPILOGUE_BIAS = 4,
};

#define CCUDA_CUBLASLT_FUNCTIONS(X) \
    X(cublasStatus_t, cublasLtCreate, (cublasLtHandle_t *handle), "cublasLtCreate") \
    X(cublasStatus_t, cublasLtDestroy, (cublasLtHandle_t handle), "cublasLtDestroy") \
    X(size_t, cublasLtGetVersion, (void), "cublasLtGetVersion") \
    X(cublasStatus_t, cublasLtMatmulDescCreate, (cublasLtMatmulDesc_t *desc, int computeType, int scaleType), "cublasLtMatmulDescCreate") \
    X(cublasStatus_t, cublasLtMatmulDescDestroy, (cublasLtMatmulDesc_t desc), "cublasLtMatmulDescDestroy") \
    X(cublasStatus_t, cublasLtMatmulDescSetAttribute, (cublasLtMatmulDesc_t desc, int attribute, const void *value, size_t size), "cublasLtMatmulDescSetAttribute") \
    X(cublasStatus_t, cublasLtMatrixLayoutCreate, (cublasLtMatrixLayout_t *layout, int type, uint64_t rows, uint64_t cols, int64_t ld), "cublasLtMatrixLayoutCreate") \
    X(cublasStatus_t, cublasLtMatrixLayoutDestroy, (cublasLtMatrixLayout_t layout), "cublasLtMatrixLayoutDestroy") \
    X(cublasStatus_t, cublasLtMatrixLayoutSetAttribute, (cublasLtMatrixLayout_t layout, int attribute, const void *value, size_t size), "cublasLtMatrixLayoutSetAttribute") \
    X(cublasStatus_t, cublasLtMatmulPreferenceCreate, (cublasLtMatmulPreference_t *preference), "cublasLtMatmulPreferenceCreate") \
    X(cublasStatus_t, cublasLtMatmulPreferenceDestroy, (cublasLtMatmulPreference_t preference), "cublasLtMatmulPreferenceDestroy") \
    X(cublasStatus_t, cublasLtMatmulPreferenceSetAttribute, (cublasLtMatmulPreference_t preference, int attribute, const void *value, size_t size), "cublasLtMatmulPreferenceSetAttribute") \
    X(cublasStatus_t, cublasLtMatmulAlgoGetHeuristic, (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, \
        cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d, \
        cublasLtMatmulPreference_t preference, int requested, cublasLtMatmulHeuristicResult_t *results, int *returned), "cublasLtMatmulAlgoGetHeuristic") \
    X(cublasStatus_t, cublasLtMatmul, (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha, \
        const void *a, cublasLtMatrixLayout_t aLayout, const void *b, cublasLtMatrixLayout_t bLayout, const void *beta, \
        const void *c, cublasLtMatrixLayout_t cLayout, void *d, cublasLtMatrixLayout_t dLayout, \
        const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspaceBytes, CUstream stream), "cublasLtMatmul")

/* ---------------------------------------------------------------- cuDNN 9 legacy convolution API (libcudnn.so.9) */
typedef int cudnnStatus_t;            /* CUDNN_STATUS_SUCCESS = 0 */
typedef struct cudnnContext *cudnnHandle_t;
typedef struct cudnnTensorStruct *cudnnTensorDescriptor_t;
typedef struct cudnnFilterStruct *cudnnFilterDescriptor_t;
typedef struct cudnnConvolutionStruct *cudnnConvolutionDescriptor_t;
typedef struct {
    int algo;
    cudnnStatus_t status;
    float time;
    size_t memory;
    int determinism;
    int mathType;
    int reserved[3];
} cudnnConvolutionFwdAlgoPerf_t;

enum {
    CCUDNN_TENSOR_NHWC = 1,
    CCUDNN_DATA_FLOAT = 0, CCUDNN_DATA_HALF = 2, CCUDNN_DATA_BFLOAT16 = 9,
    CCUDNN_CROSS_CORRELATION = 1,
    CCUDNN_DEFAULT_MATH = 0, CCUDNN_TENSOR_OP_MATH = 1, CCUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION = 2, CCUDNN_FMA_MATH = 3,
};

#define CCUDA_CUDNN_FUNCTIONS(X) \
    X(size_t, cudnnGetVersion, (void), "cudnnGetVersion") \
    X(const char *, cudnnGetErrorString, (cudnnStatus_t status), "cudnnGetErrorString") \
    X(cudnnStatus_t, cudnnCreate, (cudnnHandle_t *handle), "cudnnCreate") \
    X(cudnnStatus_t, cudnnDestroy, (cudnnHandle_t handle), "cudnnDestroy") \
    X(cudnnStatus_t, cudnnSetStream, (cudnnHandle_t handle, CUstream stream), "cudnnSetStream") \
    X(cudnnStatus_t, cudnnCreateTensorDescriptor, (cudnnTensorDescriptor_t *desc), "cudnnCreateTensorDescriptor") \
    X(cudnnStatus_t, cudnnDestroyTensorDescriptor, (cudnnTensorDescriptor_t desc), "cudnnDestroyTensorDescriptor") \
    X(cudnnStatus_t, cudnnSetTensor4dDescriptor, (cudnnTensorDescriptor_t desc, int format, int dataType, int n, int c, int h, int w), "cudnnSetTensor4dDescriptor") \
    X(cudnnStatus_t, cudnnCreateFilterDescriptor, (cudnnFilterDescriptor_t *desc), "cudnnCreateFilterDescriptor") \
    X(cudnnStatus_t, cudnnDestroyFilterDescriptor, (cudnnFilterDescriptor_t desc), "cudnnDestroyFilterDescriptor") \
    X(cudnnStatus_t, cudnnSetFilter4dDescriptor, (cudnnFilterDescriptor_t desc, int dataType, int format, int k, int c, int h, int w), "cudnnSetFilter4dDescriptor") \
    X(cudnnStatus_t, cudnnCreateConvolutionDescriptor, (cudnnConvolutionDescriptor_t *desc), "cudnnCreateConvolutionDescriptor") \
    X(cudnnStatus_t, cudnnDestroyConvolutionDescriptor, (cudnnConvolutionDescriptor_t desc), "cudnnDestroyConvolutionDescriptor") \
    X(cudnnStatus_t, cudnnSetConvolution2dDescriptor, (cudnnConvolutionDescriptor_t desc, int padH, int padW, int strideH, int strideW, \
        int dilationH, int dilationW, int mode, int computeType), "cudnnSetConvolution2dDescriptor") \
    X(cudnnStatus_t, cudnnSetConvolutionMathType, (cudnnConvolutionDescriptor_t desc, int mathType), "cudnnSetConvolutionMathType") \
    X(cudnnStatus_t, cudnnGetConvolutionForwardAlgorithm_v7, (cudnnHandle_t handle, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, \
        cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t y, int requested, int *returned, cudnnConvolutionFwdAlgoPerf_t *results), "cudnnGetConvolutionForwardAlgorithm_v7") \
    X(cudnnStatus_t, cudnnGetConvolutionForwardWorkspaceSize, (cudnnHandle_t handle, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, \
        cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t y, int algo, size_t *bytes), "cudnnGetConvolutionForwardWorkspaceSize") \
    X(cudnnStatus_t, cudnnConvolutionForward, (cudnnHandle_t handle, const void *alpha, cudnnTensorDescriptor_t xDesc, const void *x, \
        cudnnFilterDescriptor_t wDesc, const void *w, cudnnConvolutionDescriptor_t conv, int algo, void *workspace, size_t workspaceBytes, \
        const void *beta, cudnnTensorDescriptor_t yDesc, void *y), "cudnnConvolutionForward")

/*
 * cuDNN calls used only by optional paths (SSD_CUDA_AUTOTUNE: measured algorithm choice;
 * SSD_CUDA_FUSED_CONV: bias and residual in the convolution). OPTIONAL: a cuDNN without them keeps
 * the heuristic algorithms and the separate bias pass.
 */
typedef struct cudnnActivationStruct *cudnnActivationDescriptor_t;
enum {
    CCUDNN_ACTIVATION_IDENTITY = 5, CCUDNN_PROPAGATE_NAN = 1,
    CCUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM = 1,
};
#define CCUDA_CUDNN_EXTRA_FUNCTIONS(X) \
    X(cudnnStatus_t, cudnnFindConvolutionForwardAlgorithm, (cudnnHandle_t handle, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, \
        cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t y, int requested, int *returned, cudnnConvolutionFwdAlgoPerf_t *results), \
        "cudnnFindConvolutionForwardAlgorithm") \
    X(cudnnStatus_t, cudnnCreateActivationDescriptor, (cudnnActivationDescriptor_t *desc), "cudnnCreateActivationDescriptor") \
    X(cudnnStatus_t, cudnnSetActivationDescriptor, (cudnnActivationDescriptor_t desc, int mode, int nanPropagation, double coef), \
        "cudnnSetActivationDescriptor") \
    X(cudnnStatus_t, cudnnDestroyActivationDescriptor, (cudnnActivationDescriptor_t desc), "cudnnDestroyActivationDescriptor") \
    X(cudnnStatus_t, cudnnConvolutionBiasActivationForward, (cudnnHandle_t handle, const void *alpha1, cudnnTensorDescriptor_t xDesc, \
        const void *x, cudnnFilterDescriptor_t wDesc, const void *w, cudnnConvolutionDescriptor_t conv, int algo, void *workspace, \
        size_t workspaceBytes, const void *alpha2, cudnnTensorDescriptor_t zDesc, const void *z, cudnnTensorDescriptor_t biasDesc, \
        const void *bias, cudnnActivationDescriptor_t activation, cudnnTensorDescriptor_t yDesc, void *y), \
        "cudnnConvolutionBiasActivationForward")

/*
 * cuDNN 9 graph (backend) API, used for convolutions with SSD_CUDA_CONV_GRAPH=1 (an operation graph
 * conv -> (+ bias) -> (+ residual) per shape) and for attention (by default; SSD_CUDA_CUDNN_ATTENTION=0 off) (cuDNN
 * 9.13's single SDPA operation, else the scaled-dot-product pattern cuDNN's fused flash-attention
 * engines match); engine configurations from
 * cuDNN's heuristics, an execution plan per graph and a variant pack per call (cudnn_graph.h). OPTIONAL: without these symbols the
 * legacy convolution API above is used. Values from cudnn_graph.h (9.x; unchanged since 8.x).
 */
typedef void *cudnnBackendDescriptor_t;
enum {
    /* cudnnBackendDescriptorType_t */
    CCUDNN_BACKEND_POINTWISE_DESCRIPTOR = 0, CCUDNN_BACKEND_CONVOLUTION_DESCRIPTOR = 1,
    CCUDNN_BACKEND_ENGINECFG_DESCRIPTOR = 3, CCUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR = 4,
    CCUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR = 5, CCUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR = 10,
    CCUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR = 13, CCUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR = 15,
    CCUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR = 16, CCUDNN_BACKEND_TENSOR_DESCRIPTOR = 17,
    CCUDNN_BACKEND_MATMUL_DESCRIPTOR = 18, CCUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR = 19,
    CCUDNN_BACKEND_REDUCTION_DESCRIPTOR = 21, CCUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR = 22,
    CCUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR = 41, /* cuDNN 9.13 and later */
    /* cudnnBackendAttributeName_t */
    CCUDNN_ATTR_POINTWISE_MODE = 0, CCUDNN_ATTR_POINTWISE_MATH_PREC = 1,
    CCUDNN_ATTR_CONVOLUTION_COMP_TYPE = 100, CCUDNN_ATTR_CONVOLUTION_CONV_MODE = 101, CCUDNN_ATTR_CONVOLUTION_DILATIONS = 102,
    CCUDNN_ATTR_CONVOLUTION_FILTER_STRIDES = 103, CCUDNN_ATTR_CONVOLUTION_POST_PADDINGS = 104,
    CCUDNN_ATTR_CONVOLUTION_PRE_PADDINGS = 105, CCUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS = 106,
    CCUDNN_ATTR_ENGINEHEUR_MODE = 200, CCUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH = 201, CCUDNN_ATTR_ENGINEHEUR_RESULTS = 202,
    CCUDNN_ATTR_EXECUTION_PLAN_HANDLE = 400, CCUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG = 401,
    CCUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE = 402,
    CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA = 700, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA = 701,
    CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC = 702, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W = 703,
    CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X = 704, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y = 705,
    CCUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR = 750, CCUDNN_ATTR_OPERATION_POINTWISE_XDESC = 751,
    CCUDNN_ATTR_OPERATION_POINTWISE_BDESC = 752, CCUDNN_ATTR_OPERATION_POINTWISE_YDESC = 753,
    CCUDNN_ATTR_OPERATIONGRAPH_HANDLE = 800, CCUDNN_ATTR_OPERATIONGRAPH_OPS = 801,
    CCUDNN_ATTR_TENSOR_BYTE_ALIGNMENT = 900, CCUDNN_ATTR_TENSOR_DATA_TYPE = 901, CCUDNN_ATTR_TENSOR_DIMENSIONS = 902,
    CCUDNN_ATTR_TENSOR_STRIDES = 903, CCUDNN_ATTR_TENSOR_UNIQUE_ID = 906, CCUDNN_ATTR_TENSOR_IS_VIRTUAL = 907,
    CCUDNN_ATTR_TENSOR_IS_BY_VALUE = 908,
    CCUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS = 1000, CCUDNN_ATTR_VARIANT_PACK_DATA_POINTERS = 1001,
    CCUDNN_ATTR_VARIANT_PACK_WORKSPACE = 1003,
    CCUDNN_ATTR_MATMUL_COMP_TYPE = 1500, CCUDNN_ATTR_OPERATION_MATMUL_ADESC = 1520, CCUDNN_ATTR_OPERATION_MATMUL_BDESC = 1521,
    CCUDNN_ATTR_OPERATION_MATMUL_CDESC = 1522, CCUDNN_ATTR_OPERATION_MATMUL_DESC = 1523,
    CCUDNN_ATTR_REDUCTION_OPERATOR = 1600, CCUDNN_ATTR_REDUCTION_COMP_TYPE = 1601,
    CCUDNN_ATTR_OPERATION_REDUCTION_XDESC = 1610, CCUDNN_ATTR_OPERATION_REDUCTION_YDESC = 1611,
    CCUDNN_ATTR_OPERATION_REDUCTION_DESC = 1612,
    CCUDNN_ATTR_OPERATION_SDPA_FWD_QDESC = 2800, CCUDNN_ATTR_OPERATION_SDPA_FWD_KDESC = 2801,
    CCUDNN_ATTR_OPERATION_SDPA_FWD_VDESC = 2802, CCUDNN_ATTR_OPERATION_SDPA_FWD_ODESC = 2803,
    CCUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC = 2805,
    /* cudnnBackendAttributeType_t */
    CCUDNN_TYPE_HANDLE = 0, CCUDNN_TYPE_DATA_TYPE = 1, CCUDNN_TYPE_BOOLEAN = 2, CCUDNN_TYPE_INT64 = 3, CCUDNN_TYPE_FLOAT = 4,
    CCUDNN_TYPE_VOID_PTR = 6, CCUDNN_TYPE_CONVOLUTION_MODE = 7, CCUDNN_TYPE_HEUR_MODE = 8, CCUDNN_TYPE_POINTWISE_MODE = 14,
    CCUDNN_TYPE_BACKEND_DESCRIPTOR = 15, CCUDNN_TYPE_REDUCTION_OPERATOR_TYPE = 18,
    /* cudnnPointwiseMode_t, cudnnReduceTensorOp_t, cudnnBackendHeurMode_t */
    CCUDNN_POINTWISE_ADD = 0, CCUDNN_POINTWISE_MUL = 1, CCUDNN_POINTWISE_DIV = 6, CCUDNN_POINTWISE_SUB = 9,
    CCUDNN_POINTWISE_EXP = 13, CCUDNN_POINTWISE_LOG = 15,
    CCUDNN_REDUCE_TENSOR_ADD = 0, CCUDNN_REDUCE_TENSOR_MAX = 3,
    CCUDNN_HEUR_MODE_INSTANT = 0, CCUDNN_HEUR_MODE_FALLBACK = 2, CCUDNN_HEUR_MODE_A = 3,
};
#define CCUDA_CUDNN_GRAPH_FUNCTIONS(X) \
    X(cudnnStatus_t, cudnnBackendCreateDescriptor, (int descriptorType, cudnnBackendDescriptor_t *descriptor), \
        "cudnnBackendCreateDescriptor") \
    X(cudnnStatus_t, cudnnBackendDestroyDescriptor, (cudnnBackendDescriptor_t descriptor), "cudnnBackendDestroyDescriptor") \
    X(cudnnStatus_t, cudnnBackendSetAttribute, (cudnnBackendDescriptor_t descriptor, int attributeName, int attributeType, \
        int64_t elementCount, const void *arrayOfElements), "cudnnBackendSetAttribute") \
    X(cudnnStatus_t, cudnnBackendGetAttribute, (cudnnBackendDescriptor_t descriptor, int attributeName, int attributeType, \
        int64_t requestedElementCount, int64_t *elementCount, void *arrayOfElements), "cudnnBackendGetAttribute") \
    X(cudnnStatus_t, cudnnBackendFinalize, (cudnnBackendDescriptor_t descriptor), "cudnnBackendFinalize") \
    X(cudnnStatus_t, cudnnBackendExecute, (cudnnHandle_t handle, cudnnBackendDescriptor_t executionPlan, \
        cudnnBackendDescriptor_t variantPack), "cudnnBackendExecute")

/* ---------------------------------------------------------------- NVRTC (libnvrtc.so.13 / .12) */
typedef int nvrtcResult;              /* NVRTC_SUCCESS = 0 */
typedef struct _nvrtcProgram *nvrtcProgram;

#define CCUDA_NVRTC_FUNCTIONS(X) \
    X(const char *, nvrtcGetErrorString, (nvrtcResult result), "nvrtcGetErrorString") \
    X(nvrtcResult, nvrtcVersion, (int *major, int *minor), "nvrtcVersion") \
    X(nvrtcResult, nvrtcCreateProgram, (nvrtcProgram *program, const char *source, const char *name, int headerCount, \
        const char *const *headers, const char *const *includeNames), "nvrtcCreateProgram") \
    X(nvrtcResult, nvrtcDestroyProgram, (nvrtcProgram *program), "nvrtcDestroyProgram") \
    X(nvrtcResult, nvrtcAddNameExpression, (nvrtcProgram program, const char *nameExpression), "nvrtcAddNameExpression") \
    X(nvrtcResult, nvrtcCompileProgram, (nvrtcProgram program, int optionCount, const char *const *options), "nvrtcCompileProgram") \
    X(nvrtcResult, nvrtcGetLoweredName, (nvrtcProgram program, const char *nameExpression, const char **loweredName), "nvrtcGetLoweredName") \
    X(nvrtcResult, nvrtcGetProgramLogSize, (nvrtcProgram program, size_t *size), "nvrtcGetProgramLogSize") \
    X(nvrtcResult, nvrtcGetProgramLog, (nvrtcProgram program, char *log), "nvrtcGetProgramLog") \
    X(nvrtcResult, nvrtcGetCUBINSize, (nvrtcProgram program, size_t *size), "nvrtcGetCUBINSize") \
    X(nvrtcResult, nvrtcGetCUBIN, (nvrtcProgram program, char *cubin), "nvrtcGetCUBIN") \
    X(nvrtcResult, nvrtcGetPTXSize, (nvrtcProgram program, size_t *size), "nvrtcGetPTXSize") \
    X(nvrtcResult, nvrtcGetPTX, (nvrtcProgram program, char *ptx), "nvrtcGetPTX")

/* ---------------------------------------------------------------- function tables */
#define CCUDA_FIELD(ret, name, params, symbol) ret (*name) params;

/** Driver API entry points (all resolved, or the table is not returned). */
typedef struct { CCUDA_DRIVER_FUNCTIONS(CCUDA_FIELD) } CCUDADriverAPI;
/** CUDA graph entry points of the driver (optional; see ccuda_load_graph_api). */
typedef struct { CCUDA_GRAPH_FUNCTIONS(CCUDA_FIELD) } CCUDAGraphAPI;
/** cuBLASLt entry points. */
typedef struct { CCUDA_CUBLASLT_FUNCTIONS(CCUDA_FIELD) } CCUDACublasLtAPI;
/** cuDNN 9 entry points (legacy convolution API). */
typedef struct { CCUDA_CUDNN_FUNCTIONS(CCUDA_FIELD) } CCUDACudnnAPI;
/** Optional cuDNN entry points (see ccuda_load_cudnn_extra_api). */
typedef struct { CCUDA_CUDNN_EXTRA_FUNCTIONS(CCUDA_FIELD) } CCUDACudnnExtraAPI;
/** cuDNN graph (backend) API entry points (optional; see ccuda_load_cudnn_graph_api). */
typedef struct { CCUDA_CUDNN_GRAPH_FUNCTIONS(CCUDA_FIELD) } CCUDACudnnGraphAPI;
/** NVRTC entry points. */
typedef struct { CCUDA_NVRTC_FUNCTIONS(CCUDA_FIELD) } CCUDANvrtcAPI;

/** Which library ccuda_load() opens. */
typedef enum {
    CCUDA_LIBRARY_DRIVER = 0,
    CCUDA_LIBRARY_CUBLASLT = 1,
    CCUDA_LIBRARY_CUDNN = 2,
    CCUDA_LIBRARY_NVRTC = 3,
} CCUDALibrary;

/**
 * Opens `library` (once per process; later calls return the cached result) and resolves all of
 * its symbols. Searches, in order: the folders in $SSD_CUDA_LIBRARY_PATH (colon-separated), the
 * dynamic loader's own path (LD_LIBRARY_PATH, ld.so.cache), /usr/local/cuda/lib64 and
 * /usr/local/cuda*\/targets/x86_64-linux/lib. Returns the function table, or NULL with a message
 * in `message` naming the missing library (and where it looked) or the missing symbol.
 * `path`, if not NULL, receives the file that was opened.
 */
const void *ccuda_load(CCUDALibrary library, char *message, size_t messageLength, char *path, size_t pathLength);

/** ccuda_load() with `extraPath` (colon-separated folders, may be NULL) searched before $SSD_CUDA_LIBRARY_PATH. */
const void *ccuda_load_searching(CCUDALibrary library, const char *extraPath, char *message, size_t messageLength,
                                 char *path, size_t pathLength);

/**
 * Resolves the CUDA graph entry points (CCUDA_GRAPH_FUNCTIONS) from the driver library that
 * ccuda_load(CCUDA_LIBRARY_DRIVER, ...) opened. Returns 1 with `table` filled when every one is
 * there; otherwise 0, `table` zeroed, and `message` naming the missing symbols and the file (or
 * saying that the driver is not loaded). Never caches a failure of the driver itself.
 */
int ccuda_load_graph_api(CCUDAGraphAPI *table, char *message, size_t messageLength);

/** ccuda_load_graph_api() for CCUDA_CUDNN_EXTRA_FUNCTIONS, from the cuDNN library ccuda_load() opened. */
int ccuda_load_cudnn_extra_api(CCUDACudnnExtraAPI *table, char *message, size_t messageLength);

/** ccuda_load_graph_api() for CCUDA_CUDNN_GRAPH_FUNCTIONS, from the cuDNN library ccuda_load() opened. */
int ccuda_load_cudnn_graph_api(CCUDACudnnGraphAPI *table, char *message, size_t messageLength);

#ifdef __cplusplus
}
#endif
#endif
