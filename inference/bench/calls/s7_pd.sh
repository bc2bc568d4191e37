#!/usr/bin/env bash
# Prepared in session 6: PD on one H200 after the vision graphs and the high-priority KV streams
# (both landed after the last PD call): `gpu-1p1d-mps` 16 pages twice, with the per-kind TPOT
# table and the stage table (transfer stage was p50 8.6 ms, p99 15-105 ms); then the engine
# benchmark with a third, profiled layout-prefill pass for its kernel table. Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s7_pd.sh OUT
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 90 python3 -m pytest -q -m gpu tests/inference/transfer tests/inference/disagg 2>&1 | tail -2
for run in a b; do
  timeout 150 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml --pages 16 \
    --out "$out/pd_h200_mps_$run.json" > "$out/pd_mps_$run.log" 2>&1
  echo "== run $run"; grep -v "Loading weights\|Writing model\|CudaIPCTypes" "$out/pd_mps_$run.log" | tail -26
done
# the layout prefill pass with its kernel table (#3: 36.5 pages/s, GPU-bound, need 40)
DOCPIPE_PROFILE_KERNELS=1 timeout 150 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -26
