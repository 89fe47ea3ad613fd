#!/usr/bin/env bash
# GPU check of the CUDA backend (run on the H100/H200 machine from the repository root, after
# Scripts/gpu/build.sh here; carry .gpu-bin). Writes logs to $OUT (or ./gpu-out).
#   1. what is on the machine (GPU, driver, the CUDA libraries the backend will open)
#   2. ssd-cuda-check parity   every op vs ReferenceBackend, cuDNN and im2col convolutions
#   3. ssd-cuda-check memory   20 passes of a UNet-like block, live bytes and pool must be stable
#   4. ssd-cuda-check bench    GEMM / flash attention / conv TFLOP/s, memory-bound ops GB/s
#   5. the same GEMM / attention / conv shapes in PyTorch on the same card (baseline)
#   6. compute-sanitizer memcheck over the parity run (skipped when SSD_GPU_QUICK=1)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
BIN="${1:-.gpu-bin/ssd-cuda-check}"
LOG="$OUT/cuda-check.log"
exec > >(tee -a "$LOG") 2>&1

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
CUDNN_DIR=$(find /usr /opt -name 'libcudnn.so.9' 2>/dev/null | head -n 1 | xargs -r dirname)
CUDA_LIB=$(ls -d /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/local/cuda/lib64 2>/dev/null | head -n 1)
export SSD_CUDA_LIBRARY_PATH="${CUDA_LIB}${CUDNN_DIR:+:$CUDNN_DIR}"
export LD_LIBRARY_PATH="${SSD_CUDA_LIBRARY_PATH}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "SSD_CUDA_LIBRARY_PATH=$SSD_CUDA_LIBRARY_PATH"
ls "$CUDA_LIB"/libcublasLt.so* "$CUDA_LIB"/libnvrtc.so* 2>/dev/null
[ -n "$CUDNN_DIR" ] && ls "$CUDNN_DIR"/libcudnn*.so.9 2>/dev/null
chmod +x "$BIN" 2>/dev/null
ldd "$BIN" || true

status=0
echo "== parity"
timeout 240 "$BIN" parity || status=1
echo "== memory"
timeout 60 "$BIN" memory || status=1
echo "== bench"
timeout 150 "$BIN" bench || status=1

echo "== torch baseline (same shapes)"
timeout 90 python3 - <<'PY' || true
import time, torch, torch.nn.functional as F
torch.backends.cuda.matmul.allow_tf32 = False
def bench(name, fn, flops, it=20):
    for _ in range(3): fn()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(it): fn()
    torch.cuda.synchronize(); s = (time.perf_counter() - t) / it
    print(f"TORCH {name:62s} {s*1e3:8.3f} ms  {flops/s/1e12:7.1f} TFLOP/s")
h = torch.float16; d = "cuda"
x = torch.randn(8192, 1280, device=d, dtype=h); w = torch.randn(10240, 1280, device=d, dtype=h); b = torch.randn(10240, device=d, dtype=h)
bench("linear 8192x1280 -> 10240 (+bias)", lambda: F.linear(x, w, b), 2*8192*1280*10240)
a = torch.randn(8192, 8192, device=d, dtype=h); c = torch.randn(8192, 8192, device=d, dtype=h)
bench("matmul 8192^3", lambda: a @ c, 2*8192**3, 10)
for n, nk, heads in [(4096, 4096, 10), (1024, 1024, 20), (4096, 77, 10)]:
    q = torch.randn(2, heads, n, 64, device=d, dtype=h); k = torch.randn(2, heads, nk, 64, device=d, dtype=h); v = torch.randn_like(k)
    bench(f"sdpa B=2 Nq={n} Nk={nk} H={heads} D=64", lambda: F.scaled_dot_product_attention(q, k, v), 4*2*heads*n*nk*64)
for hw, ch in [(128, 320), (64, 640), (32, 1280)]:
    xi = torch.randn(2, ch, hw, hw, device=d, dtype=h).to(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(ch, ch, 3, padding=1).to(d, h).to(memory_format=torch.channels_last)
    with torch.no_grad():
        bench(f"conv3x3 B=2 {hw}x{hw} {ch}->{ch} channels_last", lambda: conv(xi), 2*2*hw*hw*ch*ch*9)
PY

if [ "${SSD_GPU_QUICK:-0}" != "1" ] && command -v compute-sanitizer >/dev/null; then
  echo "== compute-sanitizer memcheck (parity)"
  timeout 150 compute-sanitizer --tool memcheck --print-limit 20 "$BIN" parity 2>&1 | grep -E "ERROR SUMMARY|Invalid|out of bounds|FAIL|PARITY|Error" | head -60 || true
fi
echo "== done (status $status)"
exit $status
