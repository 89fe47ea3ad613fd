#!/usr/bin/env bash
# GPU visit: op parity of the default (fast) kernels, falling back to the legacy ones where they fail,
# then Scripts/gpu/visit.sh (full-size parity, it/s vs diffusers, memory over 20 generations).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
CUDNN_DIR=$(find /usr /opt -name 'libcudnn.so.9' 2>/dev/null | head -n1 | xargs -r dirname)
CUDA_LIB=$(ls -d /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/local/cuda/lib64 2>/dev/null | head -n1)
export SSD_CUDA_LIBRARY_PATH="$CUDA_LIB${CUDNN_DIR:+:$CUDNN_DIR}"; export LD_LIBRARY_PATH="$SSD_CUDA_LIBRARY_PATH:${LD_LIBRARY_PATH:-}"
chmod +x .gpu-bin/*
timeout 100 .gpu-bin/ssd-cuda-check parity > "$OUT/parity.log" 2>&1
grep -E "CUDA:|FAIL|PARITY" "$OUT/parity.log" | head -n 30
if grep -q "^FAIL" "$OUT/parity.log"; then
  if grep "^FAIL" "$OUT/parity.log" | grep -qv attention; then export SSD_CUDA_LEGACY_KERNELS=1; else export SSD_CUDA_LEGACY_ATTENTION=1; fi
  echo "fallback: SSD_CUDA_LEGACY_KERNELS=${SSD_CUDA_LEGACY_KERNELS:-0} SSD_CUDA_LEGACY_ATTENTION=${SSD_CUDA_LEGACY_ATTENTION:-0}"
fi
timeout 60 .gpu-bin/ssd-cuda-check unet-like 2>&1 | grep -E "BENCH|unet" | head -n 20
SSD_SKIP="parity tiny" bash Scripts/gpu/visit.sh
if [ -z "${SSD_CUDA_LEGACY_KERNELS:-}" ]; then
  echo "== legacy kernels, batch 16, for comparison"
  SSD_CUDA_LEGACY_KERNELS=1 .gpu-bin/ssd1b generate --model /tmp/ssd1b --prompt "a photo of a cat" --negative-prompt "blurry" \
    --width 1024 --height 1024 --steps 8 --seed 0 --images 16 --backend cuda --output /tmp/l.png 2>&1 | tr '\r' '\n' | grep -E "8/8|error"
fi
