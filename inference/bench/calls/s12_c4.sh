#!/usr/bin/env bash
# Session 12, call 4: the fused fc1 + quick_gelu GEMM (ops/cuda/gemm.py): its GPU tests and the
# vision-graph tests that capture it; layout_ab fused / DOCPIPE_FUSED_GEMM=0 / fused (one process
# each, same machine), the first with the kernel profile; the first-step probe with the prep
# thread stamped and the GIL switch interval at 5 and 0.5 ms. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 300 python3 -m pytest -q -x -m gpu tests/inference/ops/test_cuda_ops.py tests/inference/worker \
  -p no:cacheprovider 2>&1 | tail -4
DOCPIPE_PROFILE_KERNELS=1 timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --timeline \
  --out "$out/layout_fused.json" 2>&1 | grep -v "^   \[" | tail -24
DOCPIPE_FUSED_GEMM=0 timeout 150 python3 -m inference.bench.layout_ab --prepare ahead \
  --out "$out/layout_unfused.json" 2>&1 | tail -1
timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --out "$out/layout_fused_2.json" 2>&1 | tail -1
timeout 200 python3 inference/bench/calls/s12_first_step.py "$out/first_step.json" threads 2>&1 | grep -v "^ *[0-9]* *[0-9.]* *[0-9.]* *[0-9.]* *[0-9.]* .*py:" | head -150
