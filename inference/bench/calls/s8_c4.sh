#!/usr/bin/env bash
# Session 8, call 4. c3's PD run showed the decode worker's longest step inside a slow title's
# window at 72.6 ms p50 / 281.9 ms p99: graphs captured mid-run (decode steps per rows x width
# bucket, sampler steps per rows bucket, again after every history reallocation). Now all are
# captured at engine start (precapture_decode). GPU tests of that; PD gpu-1p1d-mps 16 pages; the
# 128-page pipeline; the engine benchmark (graph-captured encoder on m128n64w4s3tma). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 150 python3 -m pytest -q -m gpu tests/inference/worker/test_graph_precapture.py \
  tests/inference/worker/test_sampler_graph.py tests/inference/engine/test_async_steps.py 2>&1 | tail -3
timeout 170 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml --pages 16 \
  --out "$out/pd_h200_mps.json" > "$out/pd_mps.log" 2>&1
grep -v "Loading weights\|Writing model\|CudaIPCTypes" "$out/pd_mps.log" | grep -v "^ *$" | tail -34
grep -h "captured .* CUDA graphs" "$out/pd_mps.log" | head -4 | cut -c1-200
timeout 110 $pipe --out "$out/pipeline_128p_a.json" 2>&1 | show; pages a
timeout 150 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -8
