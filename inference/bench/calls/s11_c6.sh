#!/usr/bin/env bash
# Session 11, call 6: the final code after the whole-change review (lone shm sends as chunks of one, one
# RuntimeCopyError fallback, all_finite scanning in place, bench metas carrying a SamplingParams state):
# GPU tests of transfer and disagg, bench transfer cuda-ipc twice, the PD TPOT must-show once more. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 200 python3 -m pytest -q -rs -m gpu tests/inference/transfer tests/inference/disagg 2>&1 | tail -4
for r in 1 2; do
  timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --repeat 3 \
    --out "$out/transfer_cuda_ipc_$r.json" 2>&1 | grep -E "^ *cuda-ipc |Error" | grep -v mapped | sed "s/^/run$r /"
done
pd_run p64a 64
