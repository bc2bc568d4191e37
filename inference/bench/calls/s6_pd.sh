#!/usr/bin/env bash
# Second device call of session 6: PD on one H200 with decode pre-allocation
# (reservations at prefill dispatch, KV pushed at prefill end), the stage table
# and the fast-path counts; the engine benchmark; cuda-ipc. Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s6_pd.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 90 python3 -m pytest -q -m gpu tests/inference/transfer tests/inference/disagg 2>&1 | tail -2
for layout in gpu-1p1d-mps; do
  timeout 150 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/$layout.toml --pages 16 \
    --out "$out/pd_h200_$layout.json" > "$out/pd_$layout.log" 2>&1; grep -v "Loading weights\|Writing model" "$out/pd_$layout.log" | tail -20
done
timeout 230 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 | grep -v "Loading weights\|Writing model" | tail -12
