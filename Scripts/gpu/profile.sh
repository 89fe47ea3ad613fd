#!/usr/bin/env bash
# GPU visit for the torch.compile gap (#8), in two device calls of under 10 minutes each (the machine
# stays warm between them only briefly, so start the second as soon as the first returns; the model
# folder in /tmp survives while it is warm). Run on the device machine from the repository root after
# `bash Scripts/gpu/build.sh` here (carry .gpu-bin and .whl); dry run here on the null driver:
# `SSD_CUDA_LIBRARY_PATH=/tmp/null-cuda SSD_MODEL=/tmp/ssd1b-random SSD_SKIP=torch bash Scripts/gpu/profile.sh 1`
# (no numbers, but every command and option goes through). Everything is logged to
# $OUT/profile-<part>.log as it runs, most important first.
#   part 1 (`bash Scripts/gpu/profile.sh 1`, about 6 min):
#     1. op parity: default, im2col, SSD_CUDA_FUSED_CONV=1 without and with SSD_CUDA_AUTOTUNE=1,
#        cuDNN's graph API (SSD_CUDA_CONV_GRAPH=1 + SSD_CUDA_CUDNN_ATTENTION=1) without and with
#        SSD_CUDA_AUTOTUNE=1, SSD_CUDA_ATTENTION_ROWS=32
#     2. a full-size random SSD-1B folder in $SSD_MODEL (default /tmp/ssd1b) unless it is there
#     3. where the time goes: ssd-cuda-check profile --model (whole UNet, 1024², UNet batch 2 and 32)
#     4. the same UNet calls in diffusers under torch.profiler, kernels grouped the same way
#     5. eager UNet ms per call with SSD_CUDA_CUDNN_ATTENTION=1, SSD_CUDA_CONV_GRAPH=1, SSD_CUDA_AUTOTUNE=1,
#        SSD_CUDA_ATTENTION_ROWS=32, SSD_CUDA_FUSED_CONV=1, autotune with both graph-API switches, and
#        SSD_CUDA_CUDNN_ATTENTION=composite, as long as time is left (SSD_BUDGET_S)
#   part 2 (`bash Scripts/gpu/profile.sh 2`, about 6 min; makes the folder again if it is gone), the
#   deliverable first; a later stage that could end after $SSD_BUDGET_S seconds (default 580) is skipped:
#     6. the 1024² table (ssd1b generate --images 1/4/8/16, 8 steps) with $SSD_TABLE_ENV (default
#        graphs + autotune) and diffusers eager in the same visit
#     7. CUDA graphs on the whole UNet (UNet batch 2 and 32): outputs, it/s eager vs replay, memory
#        over 20 replays
#     8. memory over 20 generations at 256² with the same settings
#     9. the VAE with fp16-resident weights (new default) against fp32-resident: pixels and bytes;
#        CUDA graphs on the unet-like block
# Stages can be skipped: SSD_SKIP="parity profile switches torch vae block graphs table repeat".
# Afterwards, here: `python3 Scripts/gpu/compare_profiles.py <files_at>/profile-1.log` prints the profile
# (ours beside diffusers') and the switch runs as markdown tables for Benchmarks/RESULTS.md.
set -uo pipefail
T0=$(date +%s)
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
PART="${1:-1}"
exec > >(tee "$OUT/profile-$PART.log") 2>&1
skip() { case " ${SSD_SKIP:-} " in *" $1 "*) return 0;; esac; return 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site
CUDNN_DIR=$(find /usr /opt -name 'libcudnn.so.9' 2>/dev/null | head -n1 | xargs -r dirname)
CUDA_LIB=$(ls -d /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/local/cuda/lib64 2>/dev/null | head -n1)
# A path given beforehand comes first (a dry run here: SSD_CUDA_LIBRARY_PATH=/tmp/null-cuda, see Scripts/null-cuda).
export SSD_CUDA_LIBRARY_PATH="${SSD_CUDA_LIBRARY_PATH:+$SSD_CUDA_LIBRARY_PATH:}$CUDA_LIB${CUDNN_DIR:+:$CUDNN_DIR}"
export LD_LIBRARY_PATH="$SSD_CUDA_LIBRARY_PATH:${LD_LIBRARY_PATH:-}"
chmod +x .gpu-bin/* 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
B=.gpu-bin
M="${SSD_MODEL:-/tmp/ssd1b}"
TABLE_ENV="${SSD_TABLE_ENV:-SSD_CUDA_GRAPHS=1 SSD_CUDA_AUTOTUNE=1}"
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
# True (and says so) when a stage of up to $2 seconds would end after $SSD_BUDGET_S (default 580) seconds.
late() { [ $(( $(date +%s) - T0 + ${2:-60} )) -gt "${SSD_BUDGET_S:-580}" ] && { stamp "== skipped (time): $1"; return 0; }; return 1; }

if [ "$PART" = 1 ] && ! skip parity; then
  stamp "== parity (default, im2col, fused, autotune+fused, graph, autotune+graph, rows32)"
  # (cuDNN's graph-API modes plan their shapes on first use: runtime-fused kernels compile then)
  timeout 180 $B/ssd-cuda-check parity > "$OUT/parity.log" 2>&1
  grep -E "^FAIL" "$OUT/parity.log" | head -n 20
  grep -E "^CUDA:|^PARITY" "$OUT/parity.log" | cut -c1-2000
fi
if [ ! -f "$M/unet/config.json" ]; then
  stamp "== full-size random SSD-1B folder in $M"
  timeout 300 python3 Scripts/make_fixtures.py full-size --out "$M" 2>&1 | tail -n 2
fi
if [ "$PART" = 1 ] && ! skip profile && ! late profile 120; then
  stamp "== profile: our UNet, 1024², UNet batch 2 and 32 (default settings)"
  timeout 120 $B/ssd-cuda-check profile --model "$M" --batches 2,32 --top 40 2>&1 | grep -E "PROFILE|error"
fi
if [ "$PART" = 1 ] && ! skip torch && ! late torch 120; then
  stamp "== profile: diffusers UNet (torch.profiler), same calls"
  timeout 120 python3 Scripts/gpu/diffusers_side.py profile --model "$M" --size 1024 --batch 2,32 --top 40 2>&1 | grep -E "PROFILE|Error|error"
fi
if [ "$PART" = 1 ] && ! skip switches; then
  # Most telling first; a run that could end after $SSD_BUDGET_S seconds (default 580) is skipped so
  # that the call ends inside the device's 600 s. The graph-API runs' first calls may compile fused
  # kernels (cuDNN's runtime fusion), hence their longer timeout.
  for E in "SSD_CUDA_CUDNN_ATTENTION=1" "SSD_CUDA_CONV_GRAPH=1" "SSD_CUDA_AUTOTUNE=1" "SSD_CUDA_ATTENTION_ROWS=32" \
           "SSD_CUDA_FUSED_CONV=1" "SSD_CUDA_AUTOTUNE=1 SSD_CUDA_CONV_GRAPH=1 SSD_CUDA_CUDNN_ATTENTION=1" \
           "SSD_CUDA_CUDNN_ATTENTION=composite"; do
    case "$E" in *GRAPH*|*CUDNN*) LIMIT=100;; *) LIMIT=70;; esac
    if late "$E" $LIMIT; then continue; fi
    stamp "== eager UNet with $E"
    env $E timeout $LIMIT $B/ssd-cuda-check profile --model "$M" --batches 2,32 --eager-only 1 2>&1 | grep -E "PROFILE|error"
  done
fi
if [ "$PART" = 2 ] && ! skip table; then
  for K in ${SSD_IMAGES:-1 4 8 16}; do
    stamp "== 1024², $K image(s), 8 steps, $TABLE_ENV (s/step per step; step 1 warms up, 2 captures)"
    env $TABLE_ENV timeout 100 $B/ssd1b generate --model "$M" --prompt "a photo of a cat" --negative-prompt "blurry" \
      --width 1024 --height 1024 --steps 8 --seed 0 --images $K --backend cuda --report-memory --output /tmp/t$K.png 2>&1 \
      | tr '\r' '\n' | grep -E "s/step|memory|error" | awk '!seen[$0]++' | tail -n 10
  done
  stamp "== 1024²: diffusers eager fp16, same visit"
  timeout 150 python3 Scripts/gpu/diffusers_side.py time --model "$M" --size 1024 --batch ${SSD_BATCHES_TORCH:-1,4,8,16} --steps 8
fi
if [ "$PART" = 2 ] && ! skip graphs && ! late graphs 150; then
  stamp "== graphs: whole UNet 1024², UNet batch 2 and 32, $TABLE_ENV"
  env $TABLE_ENV timeout 150 $B/ssd-cuda-check graphs --model "$M" --batches 2,32 --block 0 2>&1 | grep -E "GRAPHS|error" | head -n 60
fi
if [ "$PART" = 2 ] && ! skip repeat && ! late repeat 100; then
  stamp "== memory over 20 generations, 256², 3 steps, $TABLE_ENV"
  env $TABLE_ENV timeout 100 $B/ssd1b generate --model "$M" --prompt "a photo of a cat" --negative-prompt "blurry" \
    --width 256 --height 256 --steps 3 --seed 0 --backend cuda --quiet --repeat 20 --output /tmp/rep.png 2>&1 \
    | grep -E "run (1|2|10|19|20)/|error"
fi
if [ "$PART" = 2 ] && ! skip vae && ! late vae 90; then
  stamp "== VAE: fp16-resident weights (default) vs fp32-resident, decode 256²"
  timeout 90 $B/ssd-cuda-check vae --model "$M" 2>&1 | grep -E "VAE|error"
fi
if [ "$PART" = 2 ] && ! skip block && ! late block 60; then
  stamp "== graphs: unet-like block"
  timeout 60 $B/ssd-cuda-check graphs 2>&1 | grep -E "GRAPHS|error" | head -n 30
fi
stamp "done (part $PART)"
sleep 1  # let tee write the last lines
