#!/usr/bin/env bash
# One device call (session 4, last): the pipeline at 128 pages, engine
# defaults vs larger prefill holds (fewer, larger prefill steps: the LM
# prefill and sampler are host-bound per step), default again, then the
# transformers ratio on the first 16 pages. Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s4_final.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --max-num-seqs 512 --no-time-split --warmup-pages 24"
timeout 100 $pipe --baseline none --out "$out/pipeline_128p_default_a.json" 2>&1 | tail -3
timeout 100 $pipe --baseline none --prefill-hold-tokens 16384 --prefill-hold-s 0.05 --out "$out/pipeline_128p_hold16k_50ms.json" 2>&1 | tail -3
timeout 100 $pipe --baseline none --prefill-hold-tokens 8192 --prefill-hold-s 0.05 --out "$out/pipeline_128p_hold8k_50ms.json" 2>&1 | tail -3
timeout 100 $pipe --baseline none --out "$out/pipeline_128p_default_b.json" 2>&1 | tail -3
timeout 200 $pipe --baseline transformers --baseline-pages 16 --out "$out/pipeline_128p_vs_transformers16.json" 2>&1 | tail -5
