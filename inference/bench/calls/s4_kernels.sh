#!/usr/bin/env bash
# One device call (session 4): the pipeline at 128 pages once plain (warms
# the Triton cache) and once under torch.profiler (DOCPIPE_PROFILE_KERNELS:
# kernel time vs wall, top kernels), then the cuda-ipc transfer with block
# ids carried as runs. Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s4_kernels.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
timeout 100 $pipe --out "$out/pipeline_128p.json" 2>&1 | tail -3
DOCPIPE_PROFILE_KERNELS=1 timeout 150 $pipe --out "$out/pipeline_128p_kernels.json" 2>&1 | tail -32
timeout 120 python3 -m pytest -q -m gpu tests/inference/transfer 2>&1 | tail -2
timeout 90 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --out "$out/transfer_cuda_ipc.json" 2>&1 | tail -8
