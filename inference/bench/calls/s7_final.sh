#!/usr/bin/env bash
# Prepared in session 6: the #5 must-show in one call, once 128 pages run at >= 10 pages/s: the
# 128-page pipeline (two runs), then our engine and transformers generate() on the same first 8
# pages in one process (the ratio). Set the graph switches that won in s7_first.sh before running.
# Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s7_final.sh OUT
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
for run in a b; do
  timeout 100 $pipe --out "$out/pipeline_128p_$run.json" 2>&1 | show; pages $run
done
timeout 300 python3 -m docpipe.cli bench pipeline --pages 8 --window 8 --baseline transformers --baseline-pages 8 \
  --max-num-seqs 512 --no-time-split --warmup-pages 2 --out "$out/pipeline_8p_vs_transformers.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -8
