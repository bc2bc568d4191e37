#!/usr/bin/env bash
# Session 10, call 3: a group's METAs in chunks (one move, one METAS frame, one ACKS frame a chunk;
# metas built before the clock). GPU tests of cuda-ipc, bench transfer cuda-ipc (c1: 29-40 % of the
# device copy pipelined), then one PD run on 64 pages (the product path through send_many). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 120 python3 -m pytest -q -m gpu tests/inference/transfer 2>&1 | tail -3
timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --repeat 3 \
  --out "$out/transfer_cuda_ipc.json" 2>&1 | tail -12
pd_run p64a 64
