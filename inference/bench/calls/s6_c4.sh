#!/usr/bin/env bash
# Fourth device call of session 6: a step timeline over the first 40 steps of the 128-page pipeline
# (prefill-heavy: every page's layout request comes first), where c3's window held decode steps only.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s6_c4.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
DOCPIPE_TRACE=$out/trace_128p_first40.json.gz DOCPIPE_TRACE_STEPS=0:40 timeout 150 $pipe --out "$out/pipeline_128p_trace_first40.json" 2>&1 \
  | grep -v "Loading weights\|Writing model\|_warn_once\|UserWarning" | tail -30
