#!/usr/bin/env bash
# One short device call: layout prefill pages/s, prompt preparation on a thread
# vs inline, with the Triton vision attention among the candidates and without.
# Usage (repo root, GPU machine): bash inference/bench/calls/layout_ab_h200.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
timeout 60 python3 -m inference.bench.layout_ab --reps 2 --out "$out/layout_ab_auto.json" 2>&1 | grep "pages/s\|Error" | tail -4
DOCPIPE_VISION_ATTN=no-triton timeout 55 python3 -m inference.bench.layout_ab --reps 2 --out "$out/layout_ab_no_triton.json" 2>&1 | grep "pages/s\|Error" | tail -4
