#!/usr/bin/env bash
# Session 11, call 3: the chosen copy path (ctypes calls that keep the GIL, a chunk's runs all
# bounds-checked then issued in one loop, no stream context; the copy kernel of call 2 removed):
# GPU transfer tests, bench transfer cuda-ipc twice, the host-time probe. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 200 python3 -m pytest -q -rs -m gpu tests/inference/transfer 2>&1 | tail -3
for r in 1 2; do
  timeout 200 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --repeat 3 \
    --out "$out/transfer_cuda_ipc_$r.json" 2>&1 | grep -E "^ *cuda-ipc |Error" | grep -v mapped | sed "s/^/run$r /"
done
BUSY_INFLIGHT=64 timeout 100 python3 inference/bench/calls/s11_ipc_busy.py "$out/ipc_busy.json" 2>&1 | grep inflight | cut -c1-330
