#!/usr/bin/env bash
# Session 12, call 7: the final code (bounded admission, fused fc1 GEMM, torch's staging copy): the
# fused GEMM's GPU tests, layout_ab twice with the step timeline, `docpipe bench engine` (the issue's
# table; logits on a layout page too). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 120 python3 -m pytest -q -m gpu tests/inference/ops/test_cuda_ops.py -k "linear or quick_gelu" -p no:cacheprovider 2>&1 | tail -2
for r in 1 2; do
  timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --timeline --out "$out/layout_$r.json" 2>&1 \
    | grep "timeline:\|pages/s"
done
timeout 300 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 | grep -v "Writing\|Loading" | tail -14
