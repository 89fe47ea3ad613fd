#!/usr/bin/env bash
# Null CUDA: one shared library with every CUDA driver / cuBLASLt / cuDNN / NVRTC entry point that
# Sources/CCUDA/include/CCUDA.h declares, each succeeding and doing nothing (no memory, no kernels;
# addresses are never dereferenced). With SSD_CUDA_LIBRARY_PATH pointing at the folder this writes,
# CUDABackend runs its whole host side on a machine without a GPU: what a UNet call costs the CPU
# (tensor bookkeeping, plan caches, allocations, launches), i.e. the floor under a GPU step that
# CUDA graphs remove. Usage:
#   bash Scripts/null-cuda/build.sh /tmp/null-cuda
#   SSD_CUDA_LIBRARY_PATH=/tmp/null-cuda .build/release/ssd-cuda-check host --model DIR --batches 2,8
set -euo pipefail
cd "$(dirname "$0")"
OUT="${1:-/tmp/null-cuda}"
mkdir -p "$OUT"
cc -O2 -shared -fPIC -I ../../Sources/CCUDA/include -o "$OUT/libnullcuda.so" stubs.c special.c
for name in libcuda.so.1 libcublasLt.so.13 libcudnn.so.9 libnvrtc.so.13; do ln -sf libnullcuda.so "$OUT/$name"; done
ls -la "$OUT"
