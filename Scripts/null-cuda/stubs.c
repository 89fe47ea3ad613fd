/* Null CUDA: every entry point of Sources/CCUDA/include/CCUDA.h as a weak stub that succeeds and does
 * nothing; special.c overrides the ones that must hand something back. See README in build.sh. */
#include "CCUDA.h"

#define NULL_STUB(ret, name, params, symbol) \
    __attribute__((weak, visibility("default"))) ret null_##name params __asm__(symbol); \
    __attribute__((weak, visibility("default"))) ret null_##name params { return (ret)0; }

CCUDA_DRIVER_FUNCTIONS(NULL_STUB)
CCUDA_GRAPH_FUNCTIONS(NULL_STUB)
CCUDA_CUBLASLT_FUNCTIONS(NULL_STUB)
CCUDA_CUDNN_FUNCTIONS(NULL_STUB)
CCUDA_CUDNN_EXTRA_FUNCTIONS(NULL_STUB)
CCUDA_NVRTC_FUNCTIONS(NULL_STUB)
CCUDA_CUDNN_GRAPH_FUNCTIONS(NULL_STUB)
