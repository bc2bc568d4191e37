#!/usr/bin/env bash
# Session 8, call 6 (the session's last device time). PD gpu-1p1d-mps, 16 pages, after the GIL switch
# interval of docpipe's processes went from CPython's 5 ms to 0.5 ms (the KV sender, landing and
# reply threads no longer wait up to 5 ms per step on an engine thread busy in Python): twice with
# it, once with DOCPIPE_SWITCH_INTERVAL_MS=5 (A/B, both sides of the bench), twice with the SM
# shares at 50/50 instead of 60/40; then the 128-page pipeline. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
pd() {  # name, extra args
  local name=$1; shift
  timeout 120 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml --pages 16 \
    --out "$out/pd_h200_mps_$name.json" "$@" > "$out/pd_mps_$name.log" 2>&1
  echo "== $name"; grep "monolithic:\|disaggregated:\|  title  \|decode_max_step\|  transfer  \|token-identical" "$out/pd_mps_$name.log"
}
pd a
DOCPIPE_SWITCH_INTERVAL_MS=5 pd switch5
pd b
pd sm50a --sm-percent prefill=50 --sm-percent decode=50
pd sm50b --sm-percent prefill=50 --sm-percent decode=50
timeout 110 $pipe --out "$out/pipeline_128p_a.json" 2>&1 | show; pages a
