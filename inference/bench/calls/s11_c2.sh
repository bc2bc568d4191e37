#!/usr/bin/env bash
# Session 11, call 2: how the sender's copies are issued (call 1: _move_many is ~17 us of the ~30 us a
# 1-4 MiB transfer costs on the sender): ctypes cudaMemcpyAsync releasing the GIL per call (runtime, the
# default), holding it (runtime-gil), or one Triton copy kernel a chunk (kernel); bench transfer
# cuda-ipc interleaved by mode, twice; then the host-time probe per mode. GPU transfer tests first.
# Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 200 python3 -m pytest -q -rs -m gpu tests/inference/transfer 2>&1 | tail -3
for r in 1 2; do
  for mode in runtime runtime-gil kernel; do
    DOCPIPE_CUDA_IPC_COPY=$mode timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc \
      --sizes 1M,4M,16M,64M,256M --repeat 2 --out "$out/transfer_cuda_ipc_${mode}_$r.json" 2>&1 \
      | grep -E "^ *cuda-ipc |Error" | grep -v mapped | sed "s/^/$mode$r /"
  done
done
for mode in runtime-gil kernel; do
  DOCPIPE_CUDA_IPC_COPY=$mode BUSY_INFLIGHT=64 timeout 100 python3 inference/bench/calls/s11_ipc_busy.py "$out/ipc_busy_$mode.json" 2>&1 | grep inflight | cut -c1-330
done
