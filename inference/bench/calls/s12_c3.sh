#!/usr/bin/env bash
# Session 12, call 3: the layout pass with bounded admission (one step's worth before the first
# step), step timeline, default budget and 8k; a Triton GEMM with bias + quick_gelu in its epilogue
# against cuBLAS + our quick_gelu (s12_gemm_probe.py). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --timeline --out "$out/layout_default.json" 2>&1 | tail -12
timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --timeline --max-batched-tokens 8192 \
  --out "$out/layout_budget8192.json" 2>&1 | tail -3
timeout 300 python3 inference/bench/calls/s12_gemm_probe.py "$out/gemm_probe.json" 2>&1 | tail -60
