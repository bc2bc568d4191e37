#!/usr/bin/env bash
# One device call, the session's figures: GPU op tests, the vision attention
# sweep (if the Triton kernel fails there, the run goes on without it and says
# so), the engine benchmark (ours vs transformers), and the pipeline at 128
# pages (preparation thread on and off) and 512 pages. Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/final_h200.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 150 python3 -m pytest -q -m gpu tests/inference/ops 2>&1 | tail -3
if ! timeout 100 python3 -m inference.bench.attn_vision --out "$out/attn_vision.json" > "$out/attn_vision.log" 2>&1; then
  echo "attention sweep failed: running without the Triton kernel"; tail -5 "$out/attn_vision.log"
  export DOCPIPE_VISION_ATTN=no-triton
fi
grep "B16x\|B4x\|B1x" "$out/attn_vision.log" | sort -k4 -n | head -8
timeout 230 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -12
pipe="python3 -m docpipe.cli bench pipeline --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
timeout 100 $pipe --pages 128 --window 128 --out "$out/pipeline_h200_128p.json" 2>&1 | tail -3
DOCPIPE_PREP_THREADS=0 timeout 100 $pipe --pages 128 --window 128 --out "$out/pipeline_h200_128p_inline_prep.json" 2>&1 | tail -3
timeout 150 $pipe --pages 512 --window 256 --out "$out/pipeline_h200_512p.json" 2>&1 | tail -3
