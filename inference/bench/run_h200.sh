#!/usr/bin/env bash
# One device call on an H200: GPU tests, then the transfer, pipeline and PD
# benchmarks side by side with their baselines; JSON lands in $1.
# Usage (repo root, GPU machine): bash inference/bench/run_h200.sh OUT_DIR [PAGES]
set -u
out=${1:?output folder}; pages=${2:-32}
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv
timeout 120 python3 -m pytest -q -m gpu tests/inference/ops/test_cuda_ops.py tests/inference/transfer 2>&1 | tail -4
[ "${SKIP_ENGINE:-0}" = 1 ] || timeout 200 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" \
  2>&1 | grep -v "Loading weights\|Writing model" | tail -12
[ "${SKIP_TRANSFER:-0}" = 1 ] || timeout 90 python3 -m docpipe.cli bench transfer --transports cuda-ipc,shm,tcp --sizes 1M,4M,16M,64M,256M \
  --out "$out/transfer_h200.json" 2>&1 | tail -22
timeout 240 python3 -m docpipe.cli bench pipeline --pages "$pages" --window 32 \
  --out "$out/pipeline_h200_mineru2.5.json" 2>&1 | tail -25
timeout 150 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout gpu-1p1d --pages 8 --threads 4 \
  --out "$out/pd_h200_gpu-1p1d.json" 2>&1 | tail -15
