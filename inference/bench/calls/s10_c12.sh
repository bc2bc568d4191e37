#!/usr/bin/env bash
# Session 10, call 12: after the whole-change review (one orjson encoder for every frame): GPU tests of the transfer package and one bench transfer
# cuda-ipc. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 150 python3 -m pytest -q -rs -m gpu tests/inference/transfer 2>&1 | tail -3
timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --repeat 3 \
  --out "$out/transfer_cuda_ipc.json" 2>&1 | tail -11 | head -6
