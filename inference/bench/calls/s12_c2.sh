#!/usr/bin/env bash
# Session 12, call 2: what the host does before the layout pass's first step (s12_first_step.py);
# processor cost; layout_ab with and without PyTorch TunableOp (cuBLAS/cuBLASLt algorithms timed per
# GEMM shape in the untimed first pass). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 200 python3 inference/bench/calls/s12_first_step.py "$out/first_step.json" 2>&1 | head -90
timeout 100 python3 -m inference.bench.processor_cost --out "$out/processor_cost.json" 2>&1 | tail -12
timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --out "$out/layout_default.json" 2>&1 | tail -2
PYTORCH_TUNABLEOP_ENABLED=1 PYTORCH_TUNABLEOP_TUNING=1 PYTORCH_TUNABLEOP_FILENAME=$out/tunableop_results.csv \
  timeout 300 python3 -m inference.bench.layout_ab --prepare ahead --out "$out/layout_tunableop.json" 2>&1 | tail -4
ls -la $out
