#include "CCUDA.h"
int ccuda_placeholder(void) { return 0; }
