#!/usr/bin/env bash
# One device call: kernel tables of layout and block prefill (profile_engine)
# and the pipeline at 128 pages with
# device busy/idle. Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/profile2_h200.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 200 python3 -m inference.bench.profile_engine --workloads layout,blocks --pages 32 --out "$out/profile.json" 2>&1 \
  | grep -v "Warning\|warn" | tail -60
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
timeout 100 $pipe --out "$out/pipeline_128p.json" 2>&1 | tail -3
