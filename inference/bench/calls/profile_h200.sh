#!/usr/bin/env bash
# One device call: GPU op tests, then where time goes in the pipeline (py-spy
# over a 128-page synthetic run with a warmed cache) and in layout prefill
# (profile_engine), and the cuda-ipc transfer figures. Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/profile_h200.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 120 python3 -m pytest -q -m gpu tests/inference/ops/test_cuda_ops.py tests/inference/transfer 2>&1 | tail -3
spy=$(command -v py-spy || echo /tmp/site/bin/py-spy)
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
timeout 200 $spy record --rate 200 --format raw --threads -o "$out/pipeline_spy.txt" -- $pipe --out "$out/pipeline_128p_spy.json" 2>&1 | grep -v "^py-spy>" | tail -6
timeout 150 $pipe --out "$out/pipeline_128p.json" 2>&1 | tail -4
timeout 150 python3 -m inference.bench.profile_engine --workloads layout --pages 32 --out "$out/profile_layout.json" 2>&1 | tail -45
timeout 90 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --out "$out/transfer_cuda_ipc.json" 2>&1 | tail -8
