#!/usr/bin/env bash
# Prepared in session 9: the next session's second call, on the first call's warm machine. PD on 64
# pages twice (session 9: TPOT p99 3.4-4.8x below monolithic at 0.95-1.05 of its throughput), then the
# 128-page pipeline (session 8: 11.4-12.4 pages/s). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
for name in a b; do
  timeout 170 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml --pages 64 \
    --out "$out/pd_h200_mps_p64$name.json" > "$out/pd_p64$name.log" 2>&1
  echo "== p64$name"; grep "monolithic:\|disaggregated:\|  title  \|Traceback\|Error" "$out/pd_p64$name.log" | head -6
done
rm -f "$out"/pd_p64*.log
timeout 110 $pipe --out "$out/pipeline_128p_a.json" 2>&1 | show; pages a
