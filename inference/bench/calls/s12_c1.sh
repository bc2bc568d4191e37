#!/usr/bin/env bash
# Session 12, call 1: where the layout pass's non-kernel time goes (step timeline with the kernel
# profile; token budgets 8k / 16k (default) / 32k: 5 pages a step, graph-captured encoder, vs 11-12
# eager, vs more), and what a fused fc1 + quick_gelu could save (s12_mlp_probe.py). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
DOCPIPE_PROFILE_KERNELS=1 timeout 200 python3 -m inference.bench.layout_ab --prepare ahead --timeline \
  --out "$out/layout_default.json" 2>&1 | grep -v "^  *\[" | head -60
for n in 8192 32768; do
  timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --timeline --max-batched-tokens $n \
    --out "$out/layout_budget$n.json" 2>&1 | tail -30
done
timeout 400 python3 inference/bench/calls/s12_mlp_probe.py "$out/mlp_probe.json" 2>&1 | grep -v Warning | tail -30
