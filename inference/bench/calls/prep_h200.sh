#!/usr/bin/env bash
# One device call: request preparation cost, the vision attention sweep, layout
# prefill host phases and kernels (profile_engine), and the pipeline at 128
# pages with the preparation thread on and off. Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/prep_h200.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 60 python3 -m inference.bench.processor_cost --out "$out/processor_cost.json" 2>&1 | grep -v Warn | tail -2
timeout 100 python3 -m inference.bench.attn_vision --out "$out/attn_vision.json" 2>&1 | grep "B16x\|B4x\|wall" | tail -40
timeout 120 python3 -m inference.bench.profile_engine --workloads layout --pages 64 --out "$out/profile_layout.json" 2>&1 \
  | grep -A16 "== layout"
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
timeout 100 $pipe --out "$out/pipeline_128p.json" 2>&1 | tail -3
DOCPIPE_PREP_THREADS=0 timeout 100 $pipe --out "$out/pipeline_128p_inline_prep.json" 2>&1 | tail -3
