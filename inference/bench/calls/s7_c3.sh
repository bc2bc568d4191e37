#!/usr/bin/env bash
# Third device call of session 7: graph buckets captured at engine start (DOCPIPE_GRAPH_PRECAPTURE)
# and the lighter decode-step host path; GPU tests of the graph code; the 128-page pipeline with
# start-up capture on / off / on; then the #5 must-show ratio: our engine and transformers
# generate() on the same first 8 pages in one process.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s7_c3.sh OUT
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 120 python3 -m pytest -q -m gpu tests/inference/worker 2>&1 | tail -3
mem() { python3 -c "import json,sys; print(sys.argv[2], json.load(open(sys.argv[1]))['sides'][0].get('device_memory_GiB'))" "$out/pipeline_128p_$1.json" "$1"; }
for arm in start_a lazy start_b; do
  flag=$([ "$arm" = lazy ] && echo 0 || echo 1)
  DOCPIPE_GRAPH_PRECAPTURE=$flag timeout 110 $pipe --out "$out/pipeline_128p_$arm.json" 2>&1 | show; pages $arm; mem $arm
done
# the GIL switch interval at 1 ms instead of Python's 5 ms (the step thread shares the GIL with the
# upload, prep and render threads): same run through runpy, no code change
gil="import sys, runpy; sys.setswitchinterval(0.001); sys.argv = ['docpipe'] + sys.argv[1:]; runpy.run_module('docpipe.cli', run_name='__main__')"
timeout 110 python3 -c "$gil" ${pipe#python3 -m docpipe.cli } --out "$out/pipeline_128p_gil1ms.json" 2>&1 | show; pages gil1ms
timeout 240 python3 -m docpipe.cli bench pipeline --pages 8 --window 8 --baseline transformers --baseline-pages 8 \
  --max-num-seqs 512 --no-time-split --warmup-pages 2 --out "$out/pipeline_8p_vs_transformers.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -8
