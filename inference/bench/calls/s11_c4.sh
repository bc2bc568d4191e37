#!/usr/bin/env bash
# Session 11, call 4: the PD TPOT must-show re-run on this session's transfer path (gpu-1p1d-mps, 64
# pages), GPU tests of transfer and disagg, bench transfer cuda-ipc once more. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 200 python3 -m pytest -q -rs -m gpu tests/inference/transfer tests/inference/disagg 2>&1 | tail -4
pd_run p64a 64
timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --repeat 3 \
  --out "$out/transfer_cuda_ipc.json" 2>&1 | grep -E "^ *cuda-ipc |Error" | grep -v mapped
