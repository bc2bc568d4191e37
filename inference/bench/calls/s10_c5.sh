#!/usr/bin/env bash
# Session 10, call 5: cuda-ipc copies through the runtime's cudaMemcpyAsync by ctypes (default) vs torch
# copy_ (DOCPIPE_CUDA_IPC_COPY=torch), chunks of 16 transfers / 256 MiB, ~2 GiB a pipelined figure.
# GPU tests of the transfer package, the two bench transfer runs, one PD run. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 120 python3 -m pytest -q -m gpu tests/inference/transfer 2>&1 | tail -3
for mode in runtime torch; do
  echo "== copies: $mode"
  DOCPIPE_CUDA_IPC_COPY=$mode timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc \
    --sizes 1M,4M,16M,64M,256M --repeat 3 --out "$out/transfer_cuda_ipc_$mode.json" 2>&1 | tail -11
done
pd_run p64a 64
