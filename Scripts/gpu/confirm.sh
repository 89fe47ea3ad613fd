#!/usr/bin/env bash
# Short GPU visit after the speed switches became the defaults (fifteenth session): checks the defaults
# and re-measures torch.compile on the same card, within $SSD_BUDGET_S seconds (default 400). Run on the
# device machine from the repository root after `bash Scripts/gpu/build.sh` here (carry .gpu-bin and .whl):
#   SSD_BUDGET_S=400 bash Scripts/gpu/confirm.sh
# Stages, most important first (each skipped when it could not end within the budget):
#   features   the tiny fixtures' features on CUDA against the CPU, with the new defaults (features.sh)
#   full       a full-size random SSD-1B, 256², 3 steps: our latents (defaults) against diffusers fp16
#   table      1024², 8 steps, 1 and 16 images, the defaults (no switch set)
#   compile    diffusers with torch.compile (default mode, channels_last), 1 and 16 images, same visit
#   untuned    1024², 1 image, with SSD_CUDA_AUTOTUNE=0 (what reproducible algorithm choice costs)
# Everything goes to $OUT/confirm.log (few files: the device tool brings back at most 8).
set -uo pipefail
T0=$(date +%s)
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
exec > >(tee "$OUT/confirm.log") 2>&1
BUDGET="${SSD_BUDGET_S:-400}"
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
# Runs "${@:3}" limited to min($1, time left − 5) seconds when at least $2 seconds are left.
within() {
  local limit=$1 need=$2; shift 2
  local l; l=$(( $(left) - 5 ))
  if [ "$l" -lt "$need" ]; then stamp "-- skipped (time): $*"; return 99; fi
  timeout $(( l < limit ? l : limit )) "$@"
}

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site
CUDNN_DIR=$(find /usr /opt -name 'libcudnn.so.9' 2>/dev/null | head -n1 | xargs -r dirname)
CUDA_LIB=$(ls -d /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/local/cuda/lib64 2>/dev/null | head -n1)
export SSD_CUDA_LIBRARY_PATH="${SSD_CUDA_LIBRARY_PATH:+$SSD_CUDA_LIBRARY_PATH:}$CUDA_LIB${CUDNN_DIR:+:$CUDNN_DIR}"
export LD_LIBRARY_PATH="$SSD_CUDA_LIBRARY_PATH:${LD_LIBRARY_PATH:-}"
chmod +x .gpu-bin/* 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
B=.gpu-bin
M="${SSD_MODEL:-/tmp/ssd1b}"

FOLDER_PID=
if [ ! -f "$M/model_index.json" ]; then
  stamp "== full-size random SSD-1B folder in $M (in the background)"
  ( timeout 300 python3 Scripts/make_fixtures.py full-size --out "$M.partial" > /tmp/folder.log 2>&1 \
    && rm -rf "$M" && mv "$M.partial" "$M" ) &
  FOLDER_PID=$!
fi

stamp "== features: tiny fixtures on CUDA (defaults: graphs, autotune, fused convolutions, cuDNN attention) vs CPU"
OUT=/tmp/features within 120 40 bash Scripts/gpu/features.sh > /tmp/features.log 2>&1
stamp "features ended with status $?"
grep -aE "^FEATURE|rror" /tmp/features.log | head -n 40

if [ -n "$FOLDER_PID" ]; then wait "$FOLDER_PID"; stamp "== folder made (status $?)"; tail -n 2 /tmp/folder.log; fi

stamp "== full: 256², 3 steps, ours (cuda, defaults) vs diffusers (fp16 cuda)"
within 90 40 $B/ssd1b generate --model "$M" --prompt "a photo of an astronaut riding a horse" \
  --negative-prompt "ugly, blurry, poor quality" --width 256 --height 256 --steps 3 --seed 42 --backend cuda \
  --report-backend --output /tmp/full.png --save-latents /tmp/ours256.safetensors 2>&1 | tr '\r' '\n' | grep -aE "^backend|rror" | cut -c1-600
within 90 40 python3 Scripts/gpu/diffusers_side.py latents --model "$M" --size 256 --steps 3 --seed 42 --out /tmp/theirs256.safetensors
python3 Scripts/gpu/diffusers_side.py compare /tmp/ours256.safetensors /tmp/theirs256.safetensors

table_run() {  # $1: image count; the rest: environment settings
  local K=$1; shift
  stamp "== 1024², $K image(s), 8 steps, ${*:-defaults} (s/step per step; step 1 warms up, 2 may record a CUDA graph)"
  env "$@" timeout 100 $B/ssd1b generate --model "$M" --prompt "a photo of a cat" --negative-prompt "blurry" \
    --width 1024 --height 1024 --steps 8 --seed 0 --images $K --backend cuda --report-memory --report-backend \
    --output /tmp/t$K.png 2>&1 | tr '\r' '\n' | grep -aE "^steps|memory|^backend|rror" | cut -c1-600
}
[ "$(left)" -gt 40 ] && table_run 1
[ "$(left)" -gt 70 ] && table_run 16

stamp "== compile: diffusers, torch.compile (default mode, channels_last), 1 and 16 images, 8 steps"
within 400 150 python3 Scripts/gpu/diffusers_side.py time --model "$M" --size 1024 --batch 1,16 --steps 8 --compile 2>&1 \
  | grep -aE "seconds_per_iteration|idle allocated|rror" | cut -c1-600
stamp "compile ended"

[ "$(left)" -gt 30 ] && table_run 1 SSD_CUDA_AUTOTUNE=0
stamp "done"
sleep 1
