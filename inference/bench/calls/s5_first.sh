#!/usr/bin/env bash
# First device call of the next session: validate and A/B what landed after
# session 4's last call. GPU op/uploader/sampler-graph tests first (the
# sampler graph capture has never run on a GPU), then the pipeline at 128
# pages with sampler graphs off / on / off (carried block table and synthetic
# crops are in every run), then the engine benchmark. Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s5_first.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 150 python3 -m pytest -q -m gpu tests/inference/ops tests/inference/worker tests/inference/test_h2d.py 2>&1 | tail -4
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
timeout 100 $pipe --out "$out/pipeline_128p_a1.json" 2>&1 | tail -3
DOCPIPE_SAMPLER_GRAPHS=1 timeout 100 $pipe --out "$out/pipeline_128p_sampler_graphs.json" 2>&1 | tail -3
timeout 100 $pipe --out "$out/pipeline_128p_a2.json" 2>&1 | tail -3
DOCPIPE_SAMPLER_GRAPHS=1 timeout 100 $pipe --prefill-hold-tokens 8192 --prefill-hold-s 0.05 --out "$out/pipeline_128p_sampler_graphs_hold8k.json" 2>&1 | tail -3
timeout 230 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 | grep -v "Loading weights\|Writing model" | tail -12
