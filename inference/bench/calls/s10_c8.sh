#!/usr/bin/env bash
# Session 10, call 8: control frames parsed by orjson (c7: 61-71 % at 1-4 MiB, 57-96 % above); as call 7:
# block ids and the META dict parsed without extra copies); bench transfer cuda-ipc x2 (c5: 62 / 67 /
# 71 / 85 / 88 % of the device copy from 1 to 256 MiB), GPU tests of the transfer package. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 120 python3 -m pytest -q -m gpu tests/inference/transfer 2>&1 | tail -2
for run in a b; do
  timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --repeat 3 \
    --out "$out/transfer_cuda_ipc_$run.json" 2>&1 | tail -11 | head -6
done
