#!/usr/bin/env bash
# Second device call of the next session: PD on one H200 after session 4's
# changes that were never run there (admissions wait for the launched step
# only when they must, block ids as runs, channel v2, ascending block frees),
# under MPS priorities and under the 60/40 SM split, then cuda-ipc. Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s5_pd.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 90 python3 -m pytest -q -m gpu tests/inference/transfer 2>&1 | tail -2
for layout in gpu-1p1d-mps-priority gpu-1p1d-mps; do
  timeout 170 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/$layout.toml --pages 16 \
    --out "$out/pd_h200_$layout.json" > "$out/pd_$layout.log" 2>&1; tail -3 "$out/pd_$layout.log"
done
timeout 90 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --out "$out/transfer_cuda_ipc.json" 2>&1 | tail -7
