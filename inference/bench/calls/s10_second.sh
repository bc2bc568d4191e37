#!/usr/bin/env bash
# Prepared in session 9: the next session's second call, on the first call's warm machine. PD on 64
# pages twice (session 9: TPOT p99 3.4-4.8x below monolithic at 0.95-1.05 of its throughput), then the
# 128-page pipeline (session 8: 11.4-12.4 pages/s). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
pd_run p64a 64
pd_run p64b 64
timeout 110 $pipe --out "$out/pipeline_128p_a.json" 2>&1 | show; pages a
