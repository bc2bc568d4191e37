#!/usr/bin/env bash
# Prepared in session 8: the next session's second call, on the first call's warm machine: the
# 128-page pipeline (session 8: 12.40 pages/s) and the engine benchmark (layout prefill 34.5-35.9).
# Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 110 $pipe --out "$out/pipeline_128p_a.json" 2>&1 | show; pages a
timeout 150 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -8
