#!/usr/bin/env bash
# Second device call of session 7, prefill graphs on by default now: the prefill-graph GPU tests
# (engine memory released between engines), the 128-page pipeline with its kernel table (which
# kernels fill the device now that it is busy ~0.9 of the run) and a step timeline over prefill
# steps (what the ~15 ms of host launch a prefill step still is, and the ~20 ms device gaps
# before prefill steps), then the engine benchmark with its profiled layout-prefill pass (#3).
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s7_c2.sh OUT
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 100 python3 -m pytest -q -m gpu tests/inference/worker/test_prefill_graph.py 2>&1 | tail -2
DOCPIPE_PROFILE_KERNELS=1 timeout 120 $pipe --out "$out/pipeline_128p_kernels.json" 2>&1 | show; pages kernels
python3 - "$out/pipeline_128p_kernels.json" <<'PY'
import json, sys
k = json.load(open(sys.argv[1]))["sides"][0].get("kernels", {})
print({x: k.get(x) for x in ("device_kernel_ms", "device_copy_ms", "kernel_share_of_wall")})
for r in k.get("top", [])[:30]:
    print(f"{r['ms']:9.1f} ms {r['count']:7d}  {r['kernel']}")
PY
DOCPIPE_TRACE=$out/trace_128p_prefill.json.gz DOCPIPE_TRACE_STEPS=p60:24 timeout 150 $pipe \
  --out "$out/pipeline_128p_trace_prefill.json" 2>&1 | grep -v "Loading weights\|Writing model\|_warn_once\|UserWarning" | tail -30
DOCPIPE_PROFILE_KERNELS=1 timeout 200 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -40
