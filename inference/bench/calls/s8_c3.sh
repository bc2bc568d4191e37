#!/usr/bin/env bash
# Session 8, call 3. The graph-captured encoder has run the flash kernel as m128n64w8s3tma since
# the partial-tile masking fix took that config from 116 to 142 registers a thread (one CTA an SM;
# c2's sweep: 302 TFLOP/s at B=16 vs 418 for m128n64w4s3tma). Here: the sweep with tile-list
# (graph) launches of the candidates; layout-stage prefill (inference.bench.layout_ab, 64 pages)
# per graph config, the new default first; GPU tests of the kernel; PD gpu-1p1d-mps 16 pages with
# the decode worker's step count and longest step per slow request. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 90 python3 -m inference.bench.attn_vision --out "$out/attn.json" 2>&1 | grep -v "^mixed" | tail -40
timeout 100 python3 -m pytest -q -m gpu tests/inference/ops/test_vision_flash.py tests/inference/worker/test_vision_graph.py 2>&1 | tail -2
for config in default m128n64w8s3tma m128n64w8s3tmar128 m64n64w4s2tmar128; do
  if [ $config = default ]; then unset DOCPIPE_VISION_GRAPH_CONFIG; else export DOCPIPE_VISION_GRAPH_CONFIG=$config; fi
  timeout 90 python3 -m inference.bench.layout_ab --prepare ahead --reps 3 --out "$out/layout_$config.json" 2>&1 \
    | grep "pages/s\|Error\|Traceback" | cut -c1-200
done
unset DOCPIPE_VISION_GRAPH_CONFIG
timeout 160 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml --pages 16 \
  --out "$out/pd_h200_mps.json" > "$out/pd_mps.log" 2>&1
grep -v "Loading weights\|Writing model\|CudaIPCTypes" "$out/pd_mps.log" | tail -30
