#!/usr/bin/env bash
# One device call (session 4, first): GPU op tests, then the pipeline at 128
# pages (cold Triton cache, then a second run under py-spy --nonblocking for
# where the host time goes), PD under MPS with client priorities (both roles on
# all SMs), and the cuda-ipc transfer. Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s4_measure.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 150 python3 -m pytest -q -m gpu tests/inference/ops tests/inference/transfer 2>&1 | tail -3
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
timeout 120 $pipe --out "$out/pipeline_128p.json" 2>&1 | tail -3
spy=$(command -v py-spy || echo /tmp/site/bin/py-spy)
timeout 150 $spy record --nonblocking --rate 200 --format raw --threads -o /tmp/spy.txt -- $pipe --out "$out/pipeline_128p_spy.json" 2>&1 | grep -v "^py-spy>" | tail -3
gzip -c /tmp/spy.txt > "$out/pipeline_spy.txt.gz"
timeout 150 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps-priority.toml --pages 16 \
  --out "$out/pd_h200_gpu-1p1d-mps-priority.json" 2>&1 | tail -6
timeout 90 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --out "$out/transfer_cuda_ipc.json" 2>&1 | tail -8
