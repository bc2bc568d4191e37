#!/usr/bin/env bash
# Session 5, call 7 (short): kernel table of a 128-page pipeline run after the
# capture and padding changes (kernel time vs prefill step device time says
# whether prefill steps are still host-bound inside). Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s5_kernels.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
DOCPIPE_PROFILE_KERNELS=1 timeout 110 python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none \
  --max-num-seqs 512 --no-time-split --warmup-pages 16 --out "$out/pipeline_128p_kernels.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -40
