#!/usr/bin/env bash
# The pipeline features added since the thirteenth session, on the GPU: each generation of the tiny fixtures with
# --backend cuda (fp16, eager and with SSD_CUDA_GRAPHS=1, whose recorded regions take the IP-Adapter keys/values
# and FreeU's bases as inputs) against --backend cpu (fp32), final latents compared (relative L2; fp16 on these
# random tiny networks: expect ≲ 2e-2, as the issue's full-size criterion). About a minute.
# Run from the repository root on the device machine after Scripts/gpu/build.sh here (carry .gpu-bin):
#   OUT=$OUT bash Scripts/gpu/features.sh
# Dry run here (no GPU): SSD_BIN=.build/debug SSD_FEATURES_BACKEND=reference bash Scripts/gpu/features.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
B="${SSD_BIN:-.gpu-bin}"
GPU="${SSD_FEATURES_BACKEND:-cuda}"
OUT="${OUT:-$PWD/gpu-out}/features"
F=Tests/Fixtures/pipeline
mkdir -p "$OUT"
CUDNN_DIR=$(find /usr /opt -name 'libcudnn.so.9' 2>/dev/null | head -n 1 | xargs -r dirname)
CUDA_LIB=$(ls -d /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/local/cuda/lib64 2>/dev/null | head -n 1)
export SSD_CUDA_LIBRARY_PATH="${SSD_CUDA_LIBRARY_PATH:-${CUDA_LIB}${CUDNN_DIR:+:$CUDNN_DIR}}"

generate() {  # NAME BACKEND GRAPHS ARGS…: one generation, latents to $OUT/NAME-BACKEND-GRAPHS.safetensors
  local name=$1 backend=$2 graphs=$3
  shift 3
  SSD_CUDA_GRAPHS=$graphs timeout 120 "$B/ssd1b" generate --width 64 --height 64 --steps 4 --seed 5 --quiet \
    --backend "$backend" --output "$OUT/$name-$backend-$graphs.png" --save-latents "$OUT/$name-$backend-$graphs.safetensors" "$@" \
    > "$OUT/$name-$backend-$graphs.log" 2>&1 || { echo "FAIL $name $backend graphs=$graphs: $(tail -n 3 "$OUT/$name-$backend-$graphs.log")"; return 1; }
}

compare() {  # NAME: relative L2 of each GPU run's latents against the CPU's
  python3 - "$OUT" "$1" <<'PY'
import array, glob, json, math, struct, sys
def latents(path):  # the F32 `latents` tensor of a safetensors file (no third-party modules needed)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        entry = json.loads(f.read(n))["latents"]
        f.seek(8 + n + entry["data_offsets"][0])
        values = array.array("f")
        values.frombytes(f.read(entry["data_offsets"][1] - entry["data_offsets"][0]))
    return values
out, name = sys.argv[1], sys.argv[2]
ref = latents(f"{out}/{name}-cpu-0.safetensors")
for path in sorted(glob.glob(f"{out}/{name}-*.safetensors")):
    if path.endswith("-cpu-0.safetensors"):
        continue
    x = latents(path)
    err = math.sqrt(sum((a - b) ** 2 for a, b in zip(x, ref)) / sum(b * b for b in ref))
    print(f"FEATURE {name} {path.rsplit('/', 1)[1][len(name) + 1:-len('.safetensors')]} relative L2 {err:.3e} {'ok' if err <= 2e-2 else 'HIGH'}")
PY
}

feature() {  # NAME ARGS…: CPU once, the GPU backend eager and with graphs
  local name=$1
  shift
  generate "$name" cpu 0 "$@" || return
  generate "$name" "$GPU" 0 "$@"
  generate "$name" "$GPU" 1 "$@"
  compare "$name"
}

M="--model $F/tiny-ssd1b --prompt a-photo-of-a-cat --negative-prompt blurry"
feature ipadapter $M --ip-adapter $F/ip-adapter/sdxl_models/ip-adapter-plus_tiny_vit-h.safetensors \
  --ip-adapter $F/ip-adapter/sdxl_models/ip-adapter_tiny_vit-h.safetensors --image-encoder $F/ip-adapter/models/image_encoder \
  --ip-image $F/ip_image.png --ip-image $F/ip_image2.png --ip-scale 0.7 --ip-scale 0.4
feature ipadapter-masks $M --ip-adapter $F/ip-adapter/sdxl_models/ip-adapter_tiny_vit-h.safetensors \
  --image-encoder $F/ip-adapter/models/image_encoder --ip-image $F/ip_image.png,$F/ip_image2.png \
  --ip-mask $F/ip_mask_left.png,$F/ip_mask_right.png --ip-scale 0.7
feature freeu $M --freeu sdxl
feature textual-inversion $M --textual-inversion "$F/ti-toy.safetensors:<cat-toy>" --prompt "a photo of <cat-toy>"
# T2I-Adapters (two, one greyscale; the features are region inputs of a recorded graph; rank-6 permute).
feature t2i-adapter $M --t2i-adapter $F/t2i-adapter/xl --t2i-adapter $F/t2i-adapter/xl-gray --adapter-image $F/t2i_sketch.png \
  --adapter-image $F/t2i_sketch_wide.png --adapter-scale 0.8 --adapter-scale 0.5 --adapter-factor 0.75
# Perturbed-attention guidance (three-part batch; identity self-attention rows; the layers are in the graph key).
feature pag $M --pag-scale 2.5 --pag-layer down_blocks.2 --pag-layer up_blocks.0 --pag-adaptive-scale 0.002
# A size that is not a multiple of 32 pixels (odd latent grids; cropped upsampling).
feature odd-size $M --width 80 --height 48  # (240 noise values: torch draws fp16 as fp32)
feature inpaint9 --model $F/tiny-ssd1b-inpaint --prompt a-red-door --init-image $F/init.png --mask $F/mask.png --strength 0.8
feature controlnet-inpaint $M --init-image $F/init.png --mask $F/mask.png --controlnet $F/tiny-controlnet --control-image $F/control.png
# ControlNet Union, two conditions (its attention block across the batch rows: a tiny head dim, 2 queries).
feature controlnet-union $M --controlnet $F/tiny-controlnet-union --control-image $F/control.png --control-mode 3 \
  --control-image $F/union_control2.png --control-mode 1 --control-scale 0.8 --control-scale 0.5 --control-start 0 --control-start 0.3
# FreeU at a size that is not a multiple of 32 pixels (Fourier bases on odd grids).
feature freeu-odd $M --freeu sdxl --width 80 --height 48
# The refiner from the CPU base's latents cut at 60 % (the same latents for every backend).
generate base cpu 0 $M --denoising-end 0.6 && \
  feature refiner --model $F/tiny-ssd1b-refiner --prompt a-photo-of-a-cat --init-latents "$OUT/base-cpu-0.safetensors" --denoising-start 0.6
