#!/usr/bin/env bash
# Builds ssd-cuda-check here (the GPU machine has no Swift) and puts it in .gpu-bin/, the folder
# that Scripts/gpu/check.sh runs it from. .gpu-bin/ is git-ignored; carry it to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --static-swift-stdlib --product ssd-cuda-check
mkdir -p .gpu-bin
cp .build/release/ssd-cuda-check .gpu-bin/
ls -la .gpu-bin/
