#!/usr/bin/env bash
# One GPU visit (run on the device machine from the repository root; carry .gpu-bin and .whl):
#   1. op parity of the CUDA backend against ReferenceBackend (ssd-cuda-check parity)
#   2. the tiny pipeline fixtures on CUDA against diffusers' fp32 latents
#   3. a full-size random SSD-1B folder, 256² 3-step generation vs diffusers fp16 (latents)
#   4. it/s at 1024², ours vs diffusers eager, same card, same run
#   5. device memory over 20 generations in one process
# Logs go to $OUT. Stages can be skipped: SSD_SKIP="parity tiny full time repeat".
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
exec > >(tee -a "$OUT/visit.log") 2>&1
skip() { case " ${SSD_SKIP:-} " in *" $1 "*) return 0;; esac; return 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
CUDNN_DIR=$(find /usr /opt -name 'libcudnn.so.9' 2>/dev/null | head -n 1 | xargs -r dirname)
CUDA_LIB=$(ls -d /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/local/cuda/lib64 2>/dev/null | head -n 1)
export SSD_CUDA_LIBRARY_PATH="${CUDA_LIB}${CUDNN_DIR:+:$CUDNN_DIR}"
export LD_LIBRARY_PATH="${SSD_CUDA_LIBRARY_PATH}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
chmod +x .gpu-bin/* 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
B=.gpu-bin
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }

if ! skip parity; then
  stamp "== parity"
  timeout 150 $B/ssd-cuda-check parity 2>&1 | tail -n 60
fi

if ! skip tiny; then
  stamp "== tiny pipeline on cuda vs diffusers fp32"
  F=Tests/Fixtures/pipeline
  $B/ssd1b generate --model $F/tiny-ssd1b --prompt "a photo of a cat" --width 64 --height 64 --steps 4 --guidance 9 \
    --seed 0 --backend cuda --quiet --output /tmp/tiny0.png --save-latents /tmp/tiny0.safetensors \
    && python3 Scripts/gpu/diffusers_side.py compare /tmp/tiny0.safetensors $F/euler_force_zeros.safetensors
  $B/ssd1b generate --model $F/tiny-ssd1b --prompt "an astronaut riding a horse!" --negative-prompt "ugly, blurry" \
    --width 64 --height 64 --steps 4 --guidance 7.5 --seed 1 --backend cuda --quiet --output /tmp/tiny1.png \
    --save-latents /tmp/tiny1.safetensors \
    && python3 Scripts/gpu/diffusers_side.py compare /tmp/tiny1.safetensors $F/euler_negative.safetensors
fi

M=/tmp/ssd1b
if ! skip full; then
  stamp "== full-size random SSD-1B folder"
  python3 Scripts/make_fixtures.py full-size --out $M 2>&1 | tail -n 3
  stamp "== 256² 3 steps, ours (cuda) vs diffusers (fp16 cuda)"
  $B/ssd1b generate --model $M --prompt "a photo of an astronaut riding a horse" \
    --negative-prompt "ugly, blurry, poor quality" --width 256 --height 256 --steps 3 --seed 42 --backend cuda \
    --output /tmp/full.png --save-latents $OUT/ours256.safetensors
  python3 Scripts/gpu/diffusers_side.py latents --model $M --size 256 --steps 3 --seed 42 --out $OUT/theirs256.safetensors
  python3 Scripts/gpu/diffusers_side.py compare $OUT/ours256.safetensors $OUT/theirs256.safetensors
fi

if ! skip time; then
  for K in ${SSD_BATCHES:-1 4 8 16}; do
    stamp "== 1024² batch $K: ours (ssd1b generate --images $K, 8 steps; s/step per step)"
    $B/ssd1b generate --model $M --prompt "a photo of a cat" --negative-prompt "blurry" --width 1024 --height 1024 \
      --steps 8 --seed 0 --images $K --backend cuda --report-memory --output /tmp/t1024.png 2>&1 | tr '\r' '\n' \
      | grep -E "s/step|memory|error" | tail -n 8
  done
  stamp "== 1024²: diffusers eager fp16"
  timeout 200 python3 Scripts/gpu/diffusers_side.py time --model $M --size 1024 --batch ${SSD_BATCHES_TORCH:-1,4,8,16} --steps 8
fi
if ! skip repeat; then
  stamp "== memory stability: 20 generations at 256², 3 steps, one process"
  $B/ssd1b generate --model $M --prompt "a photo of a cat" --negative-prompt "blurry" --width 256 --height 256 \
    --steps 3 --seed 0 --backend cuda --quiet --repeat 20 --output /tmp/rep.png 2>&1 | grep -E "run (1|2|10|19|20)/|error"
fi
stamp "done"
