#!/usr/bin/env bash
# One device call: GPU op tests, the vision attention microbenchmark, the engine
# benchmark (ours vs transformers), and the pipeline at 128 pages with the
# request-preparation stage on and off. Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/engine_h200.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 150 python3 -m pytest -q -m gpu tests/inference/ops 2>&1 | tail -3
timeout 100 python3 -m inference.bench.attn_vision --out "$out/attn_vision.json" 2>&1 | tail -22
timeout 230 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -12
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
timeout 100 $pipe --out "$out/pipeline_128p.json" 2>&1 | tail -2
DOCPIPE_PREP_THREADS=0 timeout 80 $pipe --out "$out/pipeline_128p_inline_prep.json" 2>&1 | tail -2
