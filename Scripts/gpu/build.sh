#!/usr/bin/env bash
# Builds ssd-cuda-check and ssd1b here (the GPU machine has no Swift) and puts it in .gpu-bin/, the folder
# that Scripts/gpu/check.sh runs it from. .gpu-bin/ is git-ignored; carry it to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu-bin
for product in ssd-cuda-check ssd1b ${SSD_GPU_EXTRA_PRODUCTS:-}; do
  swift build -c release --static-swift-stdlib --product "$product"
  cp ".build/release/$product" .gpu-bin/
  # Debug info out (symbols stay, for backtraces): the device call carries at most 64 MiB, wheels included.
  strip --strip-debug ".gpu-bin/$product" 2>/dev/null || true
done
ls -la .gpu-bin/
