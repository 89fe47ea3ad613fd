#ifndef CSSDKERNELS_H
#define CSSDKERNELS_H
/* SIMD micro-kernels for SSDCPUBackend; each ISA variant is chosen at run time. */
int ssd_kernels_version(void);
#endif
