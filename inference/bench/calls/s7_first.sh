#!/usr/bin/env bash
# Prepared in session 6 for the next session's first device call: the LM prefill graphs
# (DOCPIPE_PREFILL_GRAPHS=1, landed unmeasured) and their GPU tests, the tiled prefill kernel,
# then the 128-page pipeline alternating prefill graphs on / off (vision graphs on in both),
# two runs each. Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s7_first.sh OUT
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 150 python3 -m pytest -q -m gpu tests/inference/worker tests/inference/ops/test_cuda_ops.py -k "prefill or vision or graph" 2>&1 | tail -4
mem() { python3 -c "import json,sys; print(sys.argv[2], json.load(open(sys.argv[1]))['sides'][0].get('device_memory_GiB'))" "$out/pipeline_128p_$1.json" "$1"; }
for arm in on_a off_a on_b off_b; do
  flag=$([ "${arm%_*}" = on ] && echo 1 || echo 0)
  DOCPIPE_PREFILL_GRAPHS=$flag timeout 100 $pipe --out "$out/pipeline_128p_$arm.json" 2>&1 | show; pages $arm; mem $arm
done
# vision graphs off too (re-measure after the TMA masking fix and the 32k-patch bucket cap)
DOCPIPE_PREFILL_GRAPHS=0 DOCPIPE_VISION_GRAPHS=0 timeout 100 $pipe --out "$out/pipeline_128p_eager.json" 2>&1 | show; pages eager; mem eager
