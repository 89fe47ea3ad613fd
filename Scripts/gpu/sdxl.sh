#!/usr/bin/env bash
# GPU visit, SDXL column: a full-size random SDXL folder, it/s at 1024² for ours and diffusers eager.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
CUDNN_DIR=$(find /usr /opt -name 'libcudnn.so.9' 2>/dev/null | head -n1 | xargs -r dirname)
CUDA_LIB=$(ls -d /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/local/cuda/lib64 2>/dev/null | head -n1)
export SSD_CUDA_LIBRARY_PATH="$CUDA_LIB${CUDNN_DIR:+:$CUDNN_DIR}"; export LD_LIBRARY_PATH="$SSD_CUDA_LIBRARY_PATH:${LD_LIBRARY_PATH:-}"
chmod +x .gpu-bin/*
M=/tmp/sdxl
python3 Scripts/make_fixtures.py full-size --sdxl --out $M 2>&1 | tail -n 1
for K in 1 4 8 16; do
  echo "== SDXL ours batch $K"
  .gpu-bin/ssd1b generate --model $M --prompt "a photo of a cat" --negative-prompt "blurry" --width 1024 --height 1024 \
    --steps 6 --seed 0 --images $K --backend cuda --report-memory --output /tmp/s.png 2>&1 | tr '\r' '\n' | grep -E "6/6|memory peak|error"
done
echo "== SDXL diffusers eager fp16"
timeout 150 python3 Scripts/gpu/diffusers_side.py time --model $M --size 1024 --batch 1,4,8,16 --steps 6 2>&1 | grep -E "batch|idle|Error"
