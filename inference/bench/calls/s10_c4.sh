#!/usr/bin/env bash
# Session 10, call 4: the chunked cuda-ipc path's per-chunk timeline (s10_ipc_probe2.py; c3: 26-64 %
# of the device copy), then the layout-stage prefill with a kernel profile (where the 27 ms a page go;
# #3 needs 25). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 200 python3 inference/bench/calls/s10_ipc_probe2.py "$out/ipc_probe2.json" 2>&1 | tail -40
DOCPIPE_PROFILE_KERNELS=1 timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --reps 2 \
  --out "$out/layout_profiled.json" 2>&1 | grep -v "^\[W\|Warning\|warn" | tail -32
