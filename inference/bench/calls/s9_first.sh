#!/usr/bin/env bash
# Prepared in session 8 for the next session's first device call: GPU tests of the vision kernel
# (lazy_rescale interpreter-tested only) and of the start-up captures; the attention sweep (lazy
# rescale configs, plain and tile-list launches); layout-stage prefill per graph config (default
# m128n64w4s3tma vs its lazy-rescale variant); PD gpu-1p1d-mps 16 pages three times with the role
# processes' GC freeze (session 8 had one run with a 205 ms stall of a page's KV transfers), once with
# DOCPIPE_GC_FREEZE=0. The monolithic side of bench pd now captures its decode graphs at start as the
# decode worker does: session 8's PD-vs-monolithic ratios (c4-c8) were against a monolithic p99
# inflated by mid-run captures, so these are the first fair figures since. Follow with s9_second.sh
# on the warm machine. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 120 python3 -m pytest -q -m gpu tests/inference/ops/test_vision_flash.py tests/inference/ops/test_vision_attention_choice.py \
  tests/inference/worker/test_graph_precapture.py 2>&1 | tail -2
timeout 100 python3 -m inference.bench.attn_vision --out "$out/attn.json" 2>&1 | grep "B16\|B4x\|wall" | tail -34
for config in default m128n64w4s3tmalz; do
  if [ $config = default ]; then unset DOCPIPE_VISION_GRAPH_CONFIG; else export DOCPIPE_VISION_GRAPH_CONFIG=$config; fi
  timeout 90 python3 -m inference.bench.layout_ab --prepare ahead --reps 3 --out "$out/layout_$config.json" 2>&1 \
    | grep "pages/s\|Error\|Traceback" | cut -c1-200
done
unset DOCPIPE_VISION_GRAPH_CONFIG
pd() {  # name, then env assignments for the run
  local name=$1; shift
  env "$@" timeout 120 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml \
    --pages 16 --out "$out/pd_h200_mps_$name.json" > "$out/pd_mps_$name.log" 2>&1
  echo "== $name"; grep "monolithic:\|disaggregated:\|  title  \|  transfer  \|decode_max_step" "$out/pd_mps_$name.log"
}
pd a
pd nofreeze DOCPIPE_GC_FREEZE=0
pd b
pd c
