#!/usr/bin/env bash
# One device call (session 4): pipeline at 128 pages, default allocator vs
# PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (A/B/A on one machine:
# call 2 counted ~250 cudaMalloc and ~110 cudaFree inside one timed run, and
# a cudaFree waits for the device), then a py-spy run of the current code.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s4_alloc.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
timeout 100 $pipe --out "$out/pipeline_128p_a1.json" 2>&1 | tail -3
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 100 $pipe --out "$out/pipeline_128p_expandable.json" 2>&1 | tail -3
timeout 100 $pipe --out "$out/pipeline_128p_a2.json" 2>&1 | tail -3
spy=$(command -v py-spy || echo /tmp/site/bin/py-spy)
timeout 150 $spy record --nonblocking --rate 200 --format raw --threads -o /tmp/spy.txt -- $pipe --out "$out/pipeline_128p_spy.json" 2>&1 | grep -v "^py-spy>" | tail -3
gzip -c /tmp/spy.txt > "$out/pipeline_spy.txt.gz"
