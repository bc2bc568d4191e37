#!/usr/bin/env bash
# Third device call of session 7: graph buckets captured at engine start (DOCPIPE_GRAPH_PRECAPTURE):
# GPU tests of the graph code; the 128-page pipeline with start-up capture on / off; then the #5
# must-show in one run: our engine on the 128 pages and transformers generate() on the first 8 of the
# same workload, one process; then PD (gpu-1p1d-mps, 16 pages) after the high-priority KV streams
# if time is left. Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s7_c3.sh OUT
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 90 python3 -m pytest -q -m gpu tests/inference/worker tests/inference/disagg/test_worker_engine_config.py 2>&1 | tail -3
mem() { python3 -c "import json,sys; print(sys.argv[2], json.load(open(sys.argv[1]))['sides'][0].get('device_memory_GiB'))" "$out/pipeline_128p_$1.json" "$1"; }
for arm in start lazy; do
  flag=$([ "$arm" = lazy ] && echo 0 || echo 1)
  DOCPIPE_GRAPH_PRECAPTURE=$flag timeout 110 $pipe --out "$out/pipeline_128p_$arm.json" 2>&1 | grep "captured\|device busy\|host: launch\|Traceback\|Error" | cut -c1-220; pages $arm; mem $arm
done
timeout 260 $pipe --baseline transformers --baseline-pages 8 --out "$out/pipeline_128p_vs_transformers.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -9
echo "elapsed $SECONDS s"
if [ $SECONDS -lt 420 ]; then
  timeout $((570 - SECONDS)) python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml \
    --pages 16 --out "$out/pd_h200_mps.json" > "$out/pd_mps.log" 2>&1
  grep -v "Loading weights\|Writing model\|CudaIPCTypes" "$out/pd_mps.log" | tail -26
fi
