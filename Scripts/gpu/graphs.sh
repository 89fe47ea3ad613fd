#!/usr/bin/env bash
# GPU check of CUDA graph replay (SSD_CUDA_GRAPHS=1); run on the device machine from the repository
# root after `bash Scripts/gpu/build.sh` here (carry .gpu-bin and .whl). Logs go to $OUT/graphs.log.
#   1. ssd-cuda-check graphs            the unet-like block, eager vs replayed (no model needed)
#   2. ssd-cuda-check graphs --model    the full UNet at 1024², UNet batch 2 and 8 (1 and 4 images
#                                       with guidance): outputs equal, it/s, memory over 20 replays
#   3. ssd1b generate at 1024², 10 steps, 1 and 4 images, graphs off then on (s/step per step;
#      step 1 is the warm-up, step 2 the capture, steps 3-10 replays)
#   4. memory over 20 generations at 256² with graphs on (one process)
# A full-size random folder is made in $SSD_MODEL (default /tmp/ssd1b) unless it is there.
# Stages can be skipped: SSD_SKIP="block unet generate repeat".
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
exec > >(tee -a "$OUT/graphs.log") 2>&1
skip() { case " ${SSD_SKIP:-} " in *" $1 "*) return 0;; esac; return 1; }
CUDNN_DIR=$(find /usr /opt -name 'libcudnn.so.9' 2>/dev/null | head -n1 | xargs -r dirname)
CUDA_LIB=$(ls -d /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/local/cuda/lib64 2>/dev/null | head -n1)
export SSD_CUDA_LIBRARY_PATH="$CUDA_LIB${CUDNN_DIR:+:$CUDNN_DIR}"; export LD_LIBRARY_PATH="$SSD_CUDA_LIBRARY_PATH:${LD_LIBRARY_PATH:-}"
chmod +x .gpu-bin/* 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
B=.gpu-bin
M="${SSD_MODEL:-/tmp/ssd1b}"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }

if ! skip block; then
  stamp "== graphs: unet-like block"
  timeout 120 $B/ssd-cuda-check graphs 2>&1 | tee "$OUT/graphs-block.log" | grep -E "CUDA:|GRAPHS|error" | head -n 40
  if grep -q "CAPTURE REFUSED" "$OUT/graphs-block.log"; then
    # Diagnosis: is it the capture mode (a library's call refused in the capturing thread) or cuDNN?
    stamp "== capture refused: block again with SSD_CUDA_GRAPH_CAPTURE_MODE=relaxed, then with SSD_CUDA_CONV=im2col"
    SSD_CUDA_GRAPH_CAPTURE_MODE=relaxed timeout 60 $B/ssd-cuda-check graphs 2>&1 | grep -E "REFUSED|bitwise|relative|it/s|passed|FAILED"
    SSD_CUDA_CONV=im2col timeout 60 $B/ssd-cuda-check graphs 2>&1 | grep -E "REFUSED|bitwise|relative|it/s|passed|FAILED"
  fi
fi

if [ ! -f "$M/unet/config.json" ] && { ! skip unet || ! skip generate || ! skip repeat; }; then
  stamp "== full-size random SSD-1B folder in $M"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
  python3 Scripts/make_fixtures.py full-size --out "$M" 2>&1 | tail -n 2
fi

if ! skip unet; then
  stamp "== graphs: full UNet 1024², UNet batch ${SSD_GRAPH_BATCHES:-2,8}"
  timeout 300 $B/ssd-cuda-check graphs --model "$M" --batches "${SSD_GRAPH_BATCHES:-2,8}" 2>&1 | grep -E "GRAPHS|error" | head -n 60
fi

if ! skip generate; then
  for K in ${SSD_IMAGES:-1 4}; do
    for G in 0 1; do
      stamp "== ssd1b generate 1024², $K image(s), 10 steps, SSD_CUDA_GRAPHS=$G"
      SSD_CUDA_GRAPHS=$G timeout 150 $B/ssd1b generate --model "$M" --prompt "a photo of a cat" --negative-prompt "blurry" \
        --width 1024 --height 1024 --steps 10 --seed 0 --images $K --backend cuda --report-memory --output /tmp/g$G.png 2>&1 \
        | tr '\r' '\n' | grep -E "s/step|memory|error" | awk '!seen[$0]++' | tail -n 12
    done
  done
fi

if ! skip repeat; then
  stamp "== memory over 20 generations, 256², 3 steps, SSD_CUDA_GRAPHS=1"
  SSD_CUDA_GRAPHS=1 timeout 150 $B/ssd1b generate --model "$M" --prompt "a photo of a cat" --negative-prompt "blurry" \
    --width 256 --height 256 --steps 3 --seed 0 --backend cuda --quiet --repeat 20 --output /tmp/rep.png 2>&1 \
    | grep -E "run (1|2|10|19|20)/|error"
fi
stamp "done"
