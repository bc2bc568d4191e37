#!/usr/bin/env bash
# Prepared in session 7 for the next session's first device call (everything here landed after
# session 7's last call, unmeasured on a GPU): GPU tests of the worker and disaggregation code (the
# runner's steady-decode slice copy of pending tokens, the sampler graph's packed row upload, the
# prefill worker's PrefillJob); the 128-page pipeline twice (session 7: 11.16-11.32 pages/s before
# the runner's host cuts); PD gpu-1p1d-mps 16 pages with the router's slowest-TPOT table (which span
# holds a slow title's window: transfer, decode engine, or the rest), latency windows reset after the
# warm-up page; then the engine benchmark. Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s8_first.sh OUT
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 150 python3 -m pytest -q -m gpu tests/inference/worker tests/inference/engine tests/inference/disagg 2>&1 | tail -3
for run in a b; do
  timeout 110 $pipe --out "$out/pipeline_128p_$run.json" 2>&1 | show; pages $run
done
timeout 160 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml --pages 16 \
  --out "$out/pd_h200_mps.json" > "$out/pd_mps.log" 2>&1
grep -v "Loading weights\|Writing model\|CudaIPCTypes" "$out/pd_mps.log" | tail -36
timeout 150 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -10
