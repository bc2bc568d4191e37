#!/usr/bin/env bash
# Session 11, call 1: the receiver's per-item path cut (plain-META fast path, SimpleQueue inbox, hop
# stamps), prepare's checks, ACKS finished together: bench transfer cuda-ipc of the session-start code
# (/tmp/old, 3ccd3dd) and this code interleaved, twice; then where the host time goes (s11_ipc_busy.py).
# GPU tests of the transfer package first. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
rm -rf /tmp/old && mkdir -p /tmp/old && tar -xf .whl/old.tar -C /tmp/old
timeout 150 python3 -m pytest -q -rs -m gpu tests/inference/transfer 2>&1 | tail -3
for r in 1 2; do
  for side in old new; do
    dir=$PWD; [ $side = old ] && dir=/tmp/old
    (cd $dir && timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M --repeat 2 \
      --out "$out/transfer_cuda_ipc_${side}_$r.json" 2>&1 | grep -E "^ *cuda-ipc |Error" | sed "s/^/$side$r /")
  done
done
timeout 200 python3 inference/bench/calls/s11_ipc_busy.py "$out/ipc_busy.json" 2>&1 | tail -20
