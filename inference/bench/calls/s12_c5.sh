#!/usr/bin/env bash
# Session 12, call 5: fused fc1 GEMM vs cuBLAS + quick_gelu, both with the kernel profile (one
# process each, alternating twice); the first-step probe with uploads stamped and allocator counts.
# Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
for r in 1 2; do
  DOCPIPE_PROFILE_KERNELS=1 timeout 150 python3 -m inference.bench.layout_ab --prepare ahead \
    --out "$out/layout_fused_$r.json" 2>&1 | grep "profiled pass\|pages/s\|_linear_act\|_quick_gelu\|nvjet" | head -9
  DOCPIPE_PROFILE_KERNELS=1 DOCPIPE_FUSED_GEMM=0 timeout 150 python3 -m inference.bench.layout_ab --prepare ahead \
    --out "$out/layout_unfused_$r.json" 2>&1 | grep "profiled pass\|pages/s\|_linear_act\|_quick_gelu\|nvjet" | head -9
done
timeout 200 python3 inference/bench/calls/s12_first_step.py "$out/first_step.json" threads 2>&1 \
  | grep -v "processor.host\|^ *[0-9]* *[0-9.]* *[0-9.]* *[0-9.]* *[0-9.]* .*py:" | head -120
