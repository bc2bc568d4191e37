#!/usr/bin/env bash
# Session 9, call 4. Call 3's grouped sends cut kv_queue p99 (18 -> 6-9 ms) but two of three runs had
# one group stall 83-141 ms in kv_send (one copy plan merged across the group: gather path, temporary
# as large as the group), and the group's METAs were written only after all were packed (transfer p50
# 4.5-6.7 -> 7.7-11 ms). Now each request's copies are made as a lone send makes them, the METAs go
# out shortest prompt first, each as soon as it is built. GPU tests of cuda-ipc groups; PD
# gpu-1p1d-mps 16 pages x3. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 120 python3 -m pytest -q -m gpu tests/inference/transfer/test_cuda_ipc_plan.py 2>&1 | tail -2
pd() {  # name, then env assignments for the run
  local name=$1; shift
  env "$@" timeout 120 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml \
    --pages 16 --out "$out/pd_h200_mps_$name.json" > "$out/pd_mps_$name.log" 2>&1
  echo "== $name"; grep "monolithic:\|disaggregated:\|  title  \|  transfer  \|  kv_queue  \|  kv_send  \|  kv_wire  \|  kv_inbox  \|decode_max_step\|Traceback\|Error" "$out/pd_mps_$name.log" | head -14
}
pd a
pd b
pd c
