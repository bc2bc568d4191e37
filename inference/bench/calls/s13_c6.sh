#!/usr/bin/env bash
# Session 13, call 6: the final code with FA4 installed (fa4_setup.sh): FA4's GPU tests and the warm-up
# choice; the layout pass choosing among all candidates vs DOCPIPE_VISION_ATTN=triton; `docpipe bench
# engine` (the issue's table: FA4 in the vision encoder, logits on a layout page). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fa4_setup.sh"
timeout 150 python3 -m pytest -q -m gpu tests/inference/ops/test_fa4.py tests/inference/ops/test_vision_attention_choice.py \
  -p no:cacheprovider 2>&1 | tail -3
for a in auto triton; do
  DOCPIPE_VISION_ATTN=$a timeout 200 python3 -m inference.bench.layout_ab --prepare ahead --timeline --out "$out/layout_$a.json" 2>&1 \
    | grep "pages/s\|timeline:\|Error\|error" | sed "s/^/attn=$a: /"
done
timeout 330 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 | grep -v "Writing\|Loading" | tail -16
