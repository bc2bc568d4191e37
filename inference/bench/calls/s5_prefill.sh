#!/usr/bin/env bash
# Session 5, call 3: where the prefill steps' host time goes. Pipeline at 128
# pages with the new run diagnostics (Triton kernels built/loaded inside the
# timed run, host time split launch / collect wait / other, vision attention
# choices): default (captured sampler on) / sampler eager / default / vision
# attention forced to Triton, then a py-spy run. Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s5_prefill.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
show() { grep -v "Loading weights\|Writing model\|^side\|^docpipe engine" | tail -8; }
timeout 100 $pipe --out "$out/pipeline_128p_a1.json" 2>&1 | show
DOCPIPE_SAMPLER_GRAPHS=0 timeout 100 $pipe --out "$out/pipeline_128p_sampler_eager.json" 2>&1 | show
timeout 100 $pipe --out "$out/pipeline_128p_a2.json" 2>&1 | show
DOCPIPE_VISION_ATTN=triton timeout 100 $pipe --out "$out/pipeline_128p_attn_triton.json" 2>&1 | show
spy=$(command -v py-spy || echo /tmp/site/bin/py-spy)
timeout 150 $spy record --nonblocking --rate 200 --format raw --threads -o /tmp/spy.txt -- $pipe --out "$out/pipeline_128p_spy.json" 2>&1 | grep -v "^py-spy>" | show
gzip -c /tmp/spy.txt > "$out/pipeline_spy.txt.gz"
