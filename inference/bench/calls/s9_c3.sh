#!/usr/bin/env bash
# Session 9, call 3. The prefill worker's sender thread now sends the requests queued together as one
# group (cuda-ipc: one stream wait, one copy plan, one event, the METAs in one write) and layouts allow
# 32 unacked transfers instead of 4: call 1's slowest titles spent 14-18 ms in kv_queue. GPU tests of
# cuda-ipc groups; PD gpu-1p1d-mps 16 pages x3 (call 1, before: PD p99 3.8-5.3 vs monolithic 8.1-10.4
# ms); layout_ab with the lazy-rescale graph config first and the default second (call 1 ran them the
# other way round: 36.13 vs 35.03 pages/s). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 120 python3 -m pytest -q -m gpu tests/inference/transfer/test_cuda_ipc_plan.py 2>&1 | tail -2
pd() {  # name, then env assignments for the run
  local name=$1; shift
  env "$@" timeout 120 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml \
    --pages 16 --out "$out/pd_h200_mps_$name.json" > "$out/pd_mps_$name.log" 2>&1
  echo "== $name"; grep "monolithic:\|disaggregated:\|  title  \|  transfer  \|  kv_queue  \|  kv_inbox  \|decode_max_step\|Traceback\|Error" "$out/pd_mps_$name.log" | head -12
}
pd a
pd b
pd c
for config in m128n64w4s3tmalz default; do
  if [ $config = default ]; then unset DOCPIPE_VISION_GRAPH_CONFIG; else export DOCPIPE_VISION_GRAPH_CONFIG=$config; fi
  timeout 90 python3 -m inference.bench.layout_ab --prepare ahead --reps 3 --out "$out/layout_$config.json" 2>&1 \
    | grep "pages/s\|Error\|Traceback" | cut -c1-200
done
