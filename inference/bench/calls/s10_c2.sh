#!/usr/bin/env bash
# Session 10, call 2: the cuda-ipc timeline probe (s10_ipc_probe.py). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 200 python3 inference/bench/calls/s10_ipc_probe.py "$out/ipc_probe.json" 2>&1 | tail -80
