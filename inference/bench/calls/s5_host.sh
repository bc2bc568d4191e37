#!/usr/bin/env bash
# Session 5, call 5: does per-shape host work make the prefill steps host-bound?
# F.linear host cost for new vs repeated row counts, and the vision encoder's
# forward for batches of crops of new sizes vs the same batch. Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s5_host.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 60 python3 -m inference.bench.linear_host --out "$out/linear_host.json" 2>&1 | tail -9
timeout 120 python3 -m inference.bench.prefill_host --out "$out/prefill_host.json" 2>&1 | tail -4
timeout 120 python3 -m inference.bench.prefill_host --crops 3 --out "$out/prefill_host_3crops.json" 2>&1 | tail -4
