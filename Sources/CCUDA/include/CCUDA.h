#ifndef CCUDA_H
#define CCUDA_H
/* CUDA driver, cuBLASLt, cuDNN and NVRTC entry points, opened at run time. */
int ccuda_placeholder(void);
#endif
