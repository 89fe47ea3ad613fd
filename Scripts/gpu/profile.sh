#!/usr/bin/env bash
# GPU visit for the torch.compile gap (#8): one resumable script, most important first, within a time
# budget. The session's device time (15 minutes, machine start included) allows about one 10-minute call
# and a short second one; run the same command again at once (the machine stays warm ~30 s) and it goes
# on with the stages the first call did not reach (their names are kept in /tmp/ssd-visit while the
# machine lives; a fresh machine starts over). Run on the device machine from the repository root after
# `bash Scripts/gpu/build.sh` here (carry .gpu-bin and .whl):
#   SSD_BUDGET_S=<seconds this call may take, default 560> bash Scripts/gpu/profile.sh
# Dry run here on the null driver (no numbers, but every command and option goes through):
#   OUT=/tmp/dry SSD_CUDA_LIBRARY_PATH=/tmp/null-cuda SSD_MODEL=/tmp/ssd1b-random SSD_SKIP="torch diffusers" SSD_VISIT_STATE=/tmp/visit-dry \
#     bash Scripts/gpu/profile.sh
# Each call logs to $OUT/visit-<call>.log (and $SSD_VISIT_STATE/all.log, default /tmp/ssd-visit), each
# command's whole output in $OUT/<stage>-<call>.log. Stages, in order:
#   parity     op parity of every path: default, im2col, untuned (every speed switch off), fused,
#              autotune+fused, cuDNN graph API without and with autotune, 32-row attention (`PARITY MODE name: p/n passed` per mode)
#   (folder)   a full-size random SSD-1B in $SSD_MODEL (default /tmp/ssd1b) unless it is there (made on the
#              CPU while parity runs)
#   profile    where our UNet's time goes (1024², UNet batch 2 and 32, every operation's GPU time)
#   switch:*   eager ms per UNet call with each switch (most telling first), while the table's time stays free
#   combo      the union of the switches that won, as one more run
#   table      the 1024² table (ssd1b generate --images 1/4/8/16, 8 steps) with CUDA graphs and the
#              switches `compare_profiles.py --pick` chose (parity passed, faster at both batches), or
#              $SSD_TABLE_ENV when set; one image count at a time (`table:K`); a run that fails other
#              than by its time limit is repeated with SSD_CUDA_GRAPHS=0
#   diffusers  diffusers eager fp16, same batches and steps, same visit
#   torch      diffusers' UNet under torch.profiler, the calls of `profile`, kernels grouped the same way
#   graphs     CUDA graphs on the whole UNet (batch 2 and 32): replay against eager, it/s, memory
#   repeat     memory over 20 generations at 256² with the table's settings
#   vae, block the VAE with fp16-resident weights against fp32-resident; graphs of the unet-like block
#   then the switch runs skipped for time.
# A stage that could end after $SSD_BUDGET_S seconds is left for the next call, as is one whose command
# failed (parity: one that did not finish); the model stages wait for a whole model folder;
# SSD_SKIP="parity torch …" skips stages by name (`switch` skips every switch run).
# Afterwards, here: `python3 Scripts/gpu/compare_profiles.py <files_at>/visit-1.log` (profile beside
# diffusers', switch runs), `… --table <log>` (the table); concatenate the calls' logs when there were two.
set -uo pipefail
T0=$(date +%s)
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
STATE="${SSD_VISIT_STATE:-/tmp/ssd-visit}"; mkdir -p "$STATE"; touch "$STATE/done"
CALL=$(( $(cat "$STATE/calls" 2>/dev/null || echo 0) + 1 )); echo "$CALL" > "$STATE/calls"
exec > >(tee "$OUT/visit-$CALL.log" | tee -a "$STATE/all.log") 2>&1
BUDGET="${SSD_BUDGET_S:-560}"
skip() { case " ${SSD_SKIP:-} " in *" $1 "*|*" ${1%%:*} "*) return 0;; esac; return 1; }
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
done_() { grep -qxF -- "$1" "$STATE/done"; }
mark() { echo "$1" >> "$STATE/done"; }
# True (and says so) when stage $1 of up to $2 seconds, with $3 seconds kept free after it, would end late.
late() { [ $(( $(date +%s) - T0 + $2 + ${3:-0} )) -gt "$BUDGET" ] && { stamp "== left for the next call (time): $1"; return 0; }; return 1; }
# Whether stage $1 (up to $2 s, $3 s kept free) runs now: not done, not skipped, in time.
due() { ! done_ "$1" && ! skip "$1" && ! late "$1" "$2" "${3:-0}"; }
# `due` for a stage that needs the model folder (whole: it is made under another name, then moved).
due_model() { due "$@" || return 1; [ -f "$M/model_index.json" ] || { stamp "-- skipped (no model folder): $1"; return 1; }; }
# Runs "${@:3}" with its whole output in $OUT/$1-<call>.log; shows the lines matching $2 and every
# error line; returns the command's status (a stage is marked done only when it is 0).
logged() {
  local log="$OUT/$1-$CALL.log" pattern="$2"; shift 2
  "$@" > "$log" 2>&1; local status=$?
  tr '\r' '\n' < "$log" | grep -aiE "$pattern|error|failed|^ssd1b|^ssd-cuda-check|Traceback" | awk '!seen[$0]++' | cut -c1-2000 | head -n 120
  [ "$status" = 0 ] || stamp "-- $(basename "$log" .log) ended with status $status"
  return "$status"
}

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

# The model folder is made on the CPU while parity runs on the GPU (under another name, moved into
# place when whole, so that a folder cut off by the timeout is never taken for a model).
FOLDER_PID=
if [ ! -f "$M/model_index.json" ]; then
  stamp "== full-size random SSD-1B folder in $M (in the background)"
  rm -rf "$M.partial"
  ( timeout 300 python3 Scripts/make_fixtures.py full-size --out "$M.partial" && rm -rf "$M" && mv "$M.partial" "$M" ) \
    > "$OUT/folder-$CALL.log" 2>&1 &
  FOLDER_PID=$!
fi
if due parity 180; then
  stamp "== parity (default, im2col, untuned, fused, autotune+fused, graph, autotune+graph, rows32)"
  # (cuDNN's graph-API modes plan their shapes on first use: runtime-fused kernels compile then)
  timeout 180 $B/ssd-cuda-check parity > "$OUT/parity-$CALL.log" 2>&1
  STATUS=$?
  grep -aE "^FAIL" "$OUT/parity-$CALL.log" | head -n 20
  # Every PARITY line (compare_profiles.py reads the per-mode ones), then other errors (not FAIL lines).
  grep -aE "^CUDA:|^PARITY|^ssd-cuda-check" "$OUT/parity-$CALL.log" | cut -c1-2000
  grep -aE "rror" "$OUT/parity-$CALL.log" | grep -avE "^FAIL|^PARITY" | cut -c1-500 | head -n 10
  # Status 1 is "some check failed" (the per-mode lines say which, and the switches of a failing mode
  # are left out). A crash or the timeout is reported and not retried (it would recur and cost the
  # visit's time); modes without their line count as failed.
  [ "$STATUS" = 0 ] || [ "$STATUS" = 1 ] || stamp "-- parity ended with status $STATUS"
  mark parity
fi
if [ -n "$FOLDER_PID" ]; then
  wait "$FOLDER_PID"; stamp "== folder made (status $?)"; tail -n 3 "$OUT/folder-$CALL.log"
fi
if due_model profile 120; then
  stamp "== profile: our UNet, 1024², UNet batch 2 and 32 (default settings)"
  logged profile "PROFILE" timeout 120 $B/ssd-cuda-check profile --model "$M" --batches 2,32 --top 40 && mark profile
fi
# One eager run per switch, expected to take ~30 s (load, 2 + 10 calls at each batch); the graph-API runs'
# first calls may compile fused kernels (cuDNN's runtime fusion), hence their longer estimate and limit.
# $1: the settings; $2: seconds kept free after it.
switch_run() {
  local E="$1" LIMIT=70 EXPECTED=35
  case "$E" in *GRAPH*|*CUDNN*) LIMIT=100; EXPECTED=55;; esac
  # With nothing kept free after it (the last runs of a call), the whole limit must fit.
  [ "$2" = 0 ] && EXPECTED=$LIMIT
  due_model "switch:${E:-defaults}" $EXPECTED "$2" || return 0
  stamp "== eager UNet with ${E:-defaults}"
  logged "switch-$(echo "${E:-defaults}" | tr ' =' '_-')" "PROFILE" \
    env $E timeout $LIMIT $B/ssd-cuda-check profile --model "$M" --batches 2,32 --eager-only 1 && mark "switch:${E:-defaults}"
}
# The defaults first: the baseline of the switch runs, measured the same way.
# (Since the fifteenth session autotune, fused convolutions, cuDNN's composite attention and CUDA graphs
# are the defaults: the switch runs try the remaining options and each default switched off.)
SWITCHES=("" "SSD_CUDA_CUDNN_ATTENTION=1" "SSD_CUDA_CONV_GRAPH=1" "SSD_CUDA_ATTENTION_ROWS=32 SSD_CUDA_CUDNN_ATTENTION=0"
          "SSD_CUDA_AUTOTUNE=0" "SSD_CUDA_FUSED_CONV=0" "SSD_CUDA_CUDNN_ATTENTION=0")
# (only until the table's settings are chosen: afterwards the table's remaining image counts go first)
if ! done_ table && [ ! -f "$STATE/chosen" ]; then
  for E in "${SWITCHES[@]}"; do switch_run "$E" "$RESERVE"; done
  sleep 1  # (the log reaches all.log through tee)
  UNION=$($PICK --union "$STATE/all.log")
  if [ -n "$UNION" ]; then switch_run "$UNION" "$RESERVE"; fi
fi

# The table's settings, chosen when the table starts and kept for the later stages and calls.
sleep 1
CHOSEN=$(cat "$STATE/chosen" 2>/dev/null || echo "${SSD_TABLE_ENV-SSD_CUDA_GRAPHS=1 $($PICK --pick "$STATE/all.log")}")
if ! done_ table && [ -f "$M/model_index.json" ] && ! skip table; then
  echo "$CHOSEN" > "$STATE/chosen"
  stamp "== 1024² table with: $CHOSEN"
  ALL=1
  for K in ${SSD_IMAGES:-1 4 8 16}; do
    done_ "table:$K" && continue
    if ! due "table:$K" 60; then ALL=0; continue; fi
    stamp "== 1024², $K image(s), 8 steps, $CHOSEN (s/step per step; step 1 warms up, 2 may record a CUDA graph)"
    # A run that fails (not by the timeout) is repeated once without CUDA graphs.
    for TRY in 1 2; do
      ENV="$CHOSEN"; [ $TRY = 2 ] && ENV="$CHOSEN SSD_CUDA_GRAPHS=0"
      # Each try is limited to what is left of the budget (and to 100 s).
      LEFT=$(( BUDGET - ($(date +%s) - T0) - 5 ))
      if [ $LEFT -lt 30 ]; then stamp "== left for the next call (time): table:$K"; ALL=0; break; fi
      logged "table-$K-try$TRY" "s/step|^steps|memory|^backend" \
        env $ENV timeout $(( LEFT < 100 ? LEFT : 100 )) $B/ssd1b generate --model "$M" --prompt "a photo of a cat" --negative-prompt "blurry" \
          --width 1024 --height 1024 --steps 8 --seed 0 --images $K --backend cuda --report-memory --report-backend \
          --output /tmp/t$K.png
      STATUS=$?
      if [ $STATUS = 0 ]; then mark "table:$K"; break; fi
      case "$STATUS" in 124|137) ALL=0; break;; esac
      if [ $TRY = 1 ]; then stamp "-- $K image(s) failed (status $STATUS); again with SSD_CUDA_GRAPHS=0"; else ALL=0; fi
    done
  done
  [ $ALL = 1 ] && mark table
fi
if due_model diffusers 150; then
  stamp "== 1024²: diffusers eager fp16, same visit"
  logged diffusers "seconds_per_iteration|idle allocated" \
    timeout 150 python3 Scripts/gpu/diffusers_side.py time --model "$M" --size 1024 --batch ${SSD_BATCHES_TORCH:-1,4,8,16} --steps 8 \
    && mark diffusers
fi
if due_model torch 120; then
  stamp "== profile: diffusers UNet (torch.profiler), same calls"
  logged torch "PROFILE" timeout 120 python3 Scripts/gpu/diffusers_side.py profile --model "$M" --size 1024 --batch 2,32 --top 40 \
    && mark torch
fi
if due_model graphs 150; then
  stamp "== graphs: whole UNet 1024², UNet batch 2 and 32, $CHOSEN"
  logged graphs "GRAPHS" env $CHOSEN timeout 150 $B/ssd-cuda-check graphs --model "$M" --batches 2,32 --block 0 && mark graphs
fi
if due_model repeat 100; then
  stamp "== memory over 20 generations, 256², 3 steps, $CHOSEN"
  logged repeat "run (1|2|10|19|20)/" env $CHOSEN timeout 100 $B/ssd1b generate --model "$M" --prompt "a photo of a cat" \
    --negative-prompt "blurry" --width 256 --height 256 --steps 3 --seed 0 --backend cuda --quiet --repeat 20 --output /tmp/rep.png \
    && mark repeat
fi
if due_model vae 90; then
  stamp "== VAE: fp16-resident weights (default) vs fp32-resident, decode 256²"
  logged vae "VAE" timeout 90 $B/ssd-cuda-check vae --model "$M" && mark vae
fi
if due block 60; then
  stamp "== graphs: unet-like block"
  logged block "GRAPHS" timeout 60 $B/ssd-cuda-check graphs && mark block
fi
for E in "${SWITCHES[@]}" "SSD_CUDA_CONV_GRAPH=1 SSD_CUDA_CUDNN_ATTENTION=1"; do switch_run "$E" 0; done
stamp "done (call $CALL): $(tr '\n' ' ' < "$STATE/done")"
# The device tool brings back at most 8 files: the stage logs go into one archive beside visit-<call>.log.
( cd "$OUT" && ls *-"$CALL".log 2>/dev/null | grep -v "^visit-" > /tmp/stage-logs-$CALL \
  && tar czf "stages-$CALL.tgz" -T /tmp/stage-logs-$CALL && xargs rm -f < /tmp/stage-logs-$CALL )
sleep 1  # let tee write the last lines
