#include "CSSDKernels.h"
int ssd_kernels_version(void) { return 1; }
