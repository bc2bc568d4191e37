#!/usr/bin/env bash
# Session 11, call 7: bench transfer cuda-ipc three more times on the final code (metas carrying a
# SamplingParams state, as PD METAs do; call 6 gave 76-85 % at 1-4 MiB with them). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
for r in 1 2 3; do
  timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --repeat 3 \
    --out "$out/transfer_cuda_ipc_$r.json" 2>&1 | grep -E "^ *cuda-ipc |Error" | grep -v mapped | sed "s/^/run$r /"
done
