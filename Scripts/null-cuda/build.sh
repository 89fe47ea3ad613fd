#!/usr/bin/env bash
# Builds a stand-in for the CUDA libraries (libcuda.so.1, libcublasLt.so.13, libcudnn.so.9,
# libnvrtc.so.13: one library linked under the four names) from Sources/CCUDA/include/CCUDA.h:
#   bash Scripts/null-cuda/build.sh DIR             null: every entry point succeeds and does nothing
#                                                   (no memory, no kernels); CUDABackend's host side
#                                                   runs without a GPU: host cost per UNet call,
#                                                   allocation bookkeeping, graph control flow, perf.
#   bash Scripts/null-cuda/build.sh --emulated DIR  emulated: computes on the host (memory is host
#                                                   memory, kernels compiled from the NVRTC sources with
#                                                   emulator.h by the host C++ compiler, cuBLASLt and
#                                                   cuDNN as plain loops; no CUDA graphs); slow, for
#                                                   correctness (`ssd-cuda-check parity`, small pipelines).
# Then: SSD_CUDA_LIBRARY_PATH=DIR .build/release/ssd-cuda-check … or ssd1b generate --backend cuda.
set -euo pipefail
cd "$(dirname "$0")"
MODE=null
if [ "${1:-}" = "--emulated" ]; then MODE=emulated; shift; fi
OUT="${1:-/tmp/$MODE-cuda}"
mkdir -p "$OUT"
if [ "$MODE" = emulated ]; then
  cc -O2 -shared -fPIC -I ../../Sources/CCUDA/include -DEMULATOR_HEADER="\"$PWD/emulator.h\"" \
     -o "$OUT/libnullcuda.so" stubs.c emulated.c -lm -ldl
else
  cc -O2 -shared -fPIC -I ../../Sources/CCUDA/include -o "$OUT/libnullcuda.so" stubs.c special.c
fi
for name in libcuda.so.1 libcublasLt.so.13 libcudnn.so.9 libnvrtc.so.13; do ln -sf libnullcuda.so "$OUT/$name"; done
echo "$MODE CUDA libraries in $OUT"
