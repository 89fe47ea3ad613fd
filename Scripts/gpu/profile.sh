#!/usr/bin/env bash
# GPU visit for the torch.compile gap (#8): one resumable script, most important first, within a time
# budget. The session's device time (15 minutes, machine start included) allows about one 10-minute call
# and a short second one; run the same command again at once (the machine stays warm ~30 s) and it goes
# on with the stages the first call did not reach (their names are kept in /tmp/ssd-visit while the
# machine lives; a fresh machine starts over). Run on the device machine from the repository root after
# `bash Scripts/gpu/build.sh` here (carry .gpu-bin and .whl):
#   SSD_BUDGET_S=<seconds this call may take, default 560> bash Scripts/gpu/profile.sh
# Dry run here on the null driver (no numbers, but every command and option goes through):
#   OUT=/tmp/dry SSD_CUDA_LIBRARY_PATH=/tmp/null-cuda SSD_MODEL=/tmp/ssd1b-random SSD_SKIP=torch bash Scripts/gpu/profile.sh
# Each call logs to $OUT/profile-<call>.log (and /tmp/ssd-visit/all.log). Stages, in order:
#   parity     op parity of every path: default, im2col, fused, autotune+fused, cuDNN graph API without and
#              with autotune, 32-row attention (`PARITY MODE name: p/n passed` per mode)
#   (folder)   a full-size random SSD-1B in $SSD_MODEL (default /tmp/ssd1b) unless it is there (made on the
#              CPU while parity runs)
#   profile    where our UNet's time goes (1024², UNet batch 2 and 32, every operation's GPU time)
#   switch:*   eager ms per UNet call with each switch (most telling first), while the table's time stays free
#   combo      the union of the switches that won, as one more run
#   table      the 1024² table (ssd1b generate --images 1/4/8/16, 8 steps) with CUDA graphs and the
#              switches `compare_profiles.py --pick` chose (parity passed, faster at both batches), or
#              $SSD_TABLE_ENV when set; a run that fails is repeated without CUDA graphs
#   diffusers  diffusers eager fp16, same batches and steps, same visit
#   torch      diffusers' UNet under torch.profiler, the calls of `profile`, kernels grouped the same way
#   graphs     CUDA graphs on the whole UNet (batch 2 and 32): replay against eager, it/s, memory
#   repeat     memory over 20 generations at 256² with the table's settings
#   vae, block the VAE with fp16-resident weights against fp32-resident; graphs of the unet-like block
#   then the switch runs skipped for time.
# A stage that could end after $SSD_BUDGET_S seconds is left for the next call; SSD_SKIP="parity torch …"
# skips stages by name (`switch` skips every switch run).
# Afterwards, here: `python3 Scripts/gpu/compare_profiles.py <files_at>/profile-1.log` (profile beside
# diffusers', switch runs), `… --table <log>` (the table); concatenate the calls' logs when there were two.
set -uo pipefail
T0=$(date +%s)
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
STATE=/tmp/ssd-visit; mkdir -p "$STATE"; touch "$STATE/done"
CALL=$(( $(cat "$STATE/calls" 2>/dev/null || echo 0) + 1 )); echo "$CALL" > "$STATE/calls"
exec > >(tee "$OUT/profile-$CALL.log" | tee -a "$STATE/all.log") 2>&1
BUDGET="${SSD_BUDGET_S:-560}"
skip() { case " ${SSD_SKIP:-} " in *" $1 "*|*" ${1%%:*} "*) return 0;; esac; return 1; }
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
done_() { grep -qxF -- "$1" "$STATE/done"; }
mark() { echo "$1" >> "$STATE/done"; }
# True (and says so) when stage $1 of up to $2 seconds, with $3 seconds kept free after it, would end late.
late() { [ $(( $(date +%s) - T0 + $2 + ${3:-0} )) -gt "$BUDGET" ] && { stamp "== left for the next call (time): $1"; return 0; }; return 1; }
# Whether stage $1 (up to $2 s, $3 s kept free) runs now: not done, not skipped, in time.
due() { ! done_ "$1" && ! skip "$1" && ! late "$1" "$2" "${3:-0}"; }

stamp "call $CALL, budget $BUDGET s, done before: $(tr '\n' ' ' < "$STATE/done")"
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
PICK="python3 Scripts/gpu/compare_profiles.py"
# Seconds the table and diffusers' side need (kept free while switch runs are chosen).
RESERVE="${SSD_TABLE_RESERVE_S:-220}"

# The model folder is made on the CPU while parity runs on the GPU.
FOLDER_PID=
if [ ! -f "$M/unet/config.json" ]; then
  stamp "== full-size random SSD-1B folder in $M (in the background)"
  timeout 300 python3 Scripts/make_fixtures.py full-size --out "$M" > "$OUT/folder-$CALL.log" 2>&1 &
  FOLDER_PID=$!
fi
if due parity 180; then
  stamp "== parity (default, im2col, fused, autotune+fused, graph, autotune+graph, rows32)"
  # (cuDNN's graph-API modes plan their shapes on first use: runtime-fused kernels compile then)
  timeout 180 $B/ssd-cuda-check parity > "$OUT/parity-$CALL.log" 2>&1
  grep -E "^FAIL" "$OUT/parity-$CALL.log" | head -n 20
  grep -E "^CUDA:|^PARITY" "$OUT/parity-$CALL.log" | cut -c1-2000
  mark parity
fi
if [ -n "$FOLDER_PID" ]; then
  wait "$FOLDER_PID"; stamp "== folder made (status $?)"; tail -n 2 "$OUT/folder-$CALL.log"
fi
if due profile 120; then
  stamp "== profile: our UNet, 1024², UNet batch 2 and 32 (default settings)"
  timeout 120 $B/ssd-cuda-check profile --model "$M" --batches 2,32 --top 40 2>&1 | grep -E "PROFILE|error"
  mark profile
fi
# One eager run per switch, expected to take ~30 s (load, 2 + 10 calls at each batch); the graph-API runs'
# first calls may compile fused kernels (cuDNN's runtime fusion), hence their longer estimate and limit.
# $1: the settings; $2: seconds kept free after it.
switch_run() {
  local E="$1" LIMIT=70 EXPECTED=35
  case "$E" in *GRAPH*|*CUDNN*) LIMIT=100; EXPECTED=55;; esac
  due "switch:${E:-defaults}" $EXPECTED "$2" || return 0
  stamp "== eager UNet with ${E:-defaults}"
  env $E timeout $LIMIT $B/ssd-cuda-check profile --model "$M" --batches 2,32 --eager-only 1 2>&1 | grep -E "PROFILE|error"
  mark "switch:${E:-defaults}"
}
# The defaults first: the baseline of the switch runs, measured the same way.
SWITCHES=("" "SSD_CUDA_CUDNN_ATTENTION=1" "SSD_CUDA_CONV_GRAPH=1" "SSD_CUDA_AUTOTUNE=1" "SSD_CUDA_ATTENTION_ROWS=32"
          "SSD_CUDA_FUSED_CONV=1" "SSD_CUDA_CUDNN_ATTENTION=composite")
if ! done_ table; then
  for E in "${SWITCHES[@]}"; do switch_run "$E" "$RESERVE"; done
  UNION=$($PICK --union "$STATE/all.log")
  if [ -n "$UNION" ]; then switch_run "$UNION" "$RESERVE"; fi
fi

# The table's settings, chosen when the table starts and kept for the later stages and calls.
CHOSEN=$(cat "$STATE/chosen" 2>/dev/null || echo "${SSD_TABLE_ENV-SSD_CUDA_GRAPHS=1 $($PICK --pick "$STATE/all.log")}")
if due table 140; then
  echo "$CHOSEN" > "$STATE/chosen"
  stamp "== 1024² table with: $CHOSEN"
  for K in ${SSD_IMAGES:-1 4 8 16}; do
    stamp "== 1024², $K image(s), 8 steps, $CHOSEN (s/step per step; step 1 warms up, 2 may record a CUDA graph)"
    for ENV in "$CHOSEN" "$(echo "$CHOSEN" | sed 's/SSD_CUDA_GRAPHS=1//')"; do
      env $ENV timeout 100 $B/ssd1b generate --model "$M" --prompt "a photo of a cat" --negative-prompt "blurry" \
        --width 1024 --height 1024 --steps 8 --seed 0 --images $K --backend cuda --report-memory --report-backend \
        --output /tmp/t$K.png > /tmp/t$K.log 2>&1
      STATUS=$?
      tr '\r' '\n' < /tmp/t$K.log | grep -E "s/step|^steps|memory|error|^backend" | awk '!seen[$0]++' | tail -n 16
      [ $STATUS = 0 ] && break
      stamp "== failed (status $STATUS); again without CUDA graphs"
    done
  done
  mark table
fi
if due diffusers 150; then
  stamp "== 1024²: diffusers eager fp16, same visit"
  timeout 150 python3 Scripts/gpu/diffusers_side.py time --model "$M" --size 1024 --batch ${SSD_BATCHES_TORCH:-1,4,8,16} --steps 8
  mark diffusers
fi
if due torch 120; then
  stamp "== profile: diffusers UNet (torch.profiler), same calls"
  timeout 120 python3 Scripts/gpu/diffusers_side.py profile --model "$M" --size 1024 --batch 2,32 --top 40 2>&1 | grep -E "PROFILE|Error|error"
  mark torch
fi
if due graphs 150; then
  stamp "== graphs: whole UNet 1024², UNet batch 2 and 32, $CHOSEN"
  env $CHOSEN timeout 150 $B/ssd-cuda-check graphs --model "$M" --batches 2,32 --block 0 2>&1 | grep -E "GRAPHS|error" | head -n 60
  mark graphs
fi
if due repeat 100; then
  stamp "== memory over 20 generations, 256², 3 steps, $CHOSEN"
  env $CHOSEN timeout 100 $B/ssd1b generate --model "$M" --prompt "a photo of a cat" --negative-prompt "blurry" \
    --width 256 --height 256 --steps 3 --seed 0 --backend cuda --quiet --repeat 20 --output /tmp/rep.png 2>&1 \
    | grep -E "run (1|2|10|19|20)/|error"
  mark repeat
fi
if due vae 90; then
  stamp "== VAE: fp16-resident weights (default) vs fp32-resident, decode 256²"
  timeout 90 $B/ssd-cuda-check vae --model "$M" 2>&1 | grep -E "VAE|error"
  mark vae
fi
if due block 60; then
  stamp "== graphs: unet-like block"
  timeout 60 $B/ssd-cuda-check graphs 2>&1 | grep -E "GRAPHS|error" | head -n 30
  mark block
fi
for E in "${SWITCHES[@]}" "SSD_CUDA_AUTOTUNE=1 SSD_CUDA_CONV_GRAPH=1 SSD_CUDA_CUDNN_ATTENTION=1"; do switch_run "$E" 0; done
stamp "done (call $CALL): $(tr '\n' ' ' < "$STATE/done")"
sleep 1  # let tee write the last lines
