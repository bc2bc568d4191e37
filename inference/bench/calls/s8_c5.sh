#!/usr/bin/env bash
# Session 8, call 5. c4: PD TPOT p99 4.9 ms vs monolithic 9.8 after the decode/sampler graphs moved
# to engine start, but every layout page's TTFT was ~4.4 s (throughput 0.42 of monolithic): the
# prefill worker's first batch of 16 pages ran an eager encoder call (past the largest graph),
# whose attention choice timed candidates and built a kernel missing from a fresh machine's
# Triton cache. Now made at engine start (Ops.warm_vision_attention). PD first, on a cold cache,
# worker logs at INFO (choices, start-up captures); GPU tests; PD again on the warm cache. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
pd() {
  DOCPIPE_LOG=INFO timeout 170 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml \
    --pages 16 --out "$out/pd_h200_mps_$1.json" > "$out/pd_mps_$1.log" 2>&1
  grep -v "Loading weights\|Writing model\|CudaIPCTypes" "$out/pd_mps_$1.log" | grep -v "^ *$" \
    | grep -v "INFO\|prefill_admit\|transfer_request\|await_decode\|alloc \|queue \|reserve \|handoff " | tail -22
  grep -h "vision attention\|captured .* CUDA graphs" "$out/pd_mps_$1.log" | cut -c1-220 | head -8
}
pd cold
timeout 120 python3 -m pytest -q -m gpu tests/inference/ops/test_vision_attention_choice.py \
  tests/inference/worker/test_graph_precapture.py 2>&1 | tail -2
pd warm
