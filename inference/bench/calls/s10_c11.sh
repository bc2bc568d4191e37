#!/usr/bin/env bash
# Session 10, call 11: METAS frames encoded by orjson where that writes what json writes (every float a
# METAS frame can hold checked finite when the output has a null); bench transfer cuda-ipc x2 (c10:
# 65/72/89/104/88 %), GPU tests of the transfer package. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 150 python3 -m pytest -q -m gpu tests/inference/transfer 2>&1 | tail -2
for run in a b; do
  timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --repeat 3 \
    --out "$out/transfer_cuda_ipc_$run.json" 2>&1 | tail -11 | head -6
done
