#!/usr/bin/env bash
# Session 5, call 5: host cost of F.linear with a new row count every call vs
# repeated (the prefill steps' largest host leaf in py-spy), then PD on one
# H200 after the handoff changes (stage timeline in the router metrics), under
# the 60/40 MPS split and MPS priorities. Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s5_final.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 60 python3 -m inference.bench.linear_host --out "$out/linear_host.json" 2>&1 | tail -9
timeout 90 python3 -m pytest -q -m gpu tests/inference/transfer tests/inference/disagg 2>&1 | tail -2
for layout in gpu-1p1d-mps gpu-1p1d-mps-priority; do
  timeout 170 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/$layout.toml --pages 16 \
    --out "$out/pd_h200_$layout.json" > "$out/pd_$layout.log" 2>&1; grep -v "Loading weights\|Writing model" "$out/pd_$layout.log" | tail -14
done
