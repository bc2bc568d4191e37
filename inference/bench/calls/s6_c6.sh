#!/usr/bin/env bash
# Sixth device call of session 6: after the sampler-graph pageable copy fix, the 128-page pipeline
# with its per-step log (kind, host launch, device time, idle before), and a step timeline over
# prefill steps of the block phase (window from the 60th prefill step). Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s6_c6.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
pages() { python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['sides'][0]; print(sys.argv[2], 'pages/s', round(s['pages_per_s'],3))" "$out/pipeline_128p_$1.json" $1; }
timeout 100 $pipe --out "$out/pipeline_128p_a.json" 2>&1 | grep "device busy\|host: launch\|Traceback\|Error" | cut -c1-220; pages a
DOCPIPE_TRACE=$out/trace_128p_prefill.json.gz DOCPIPE_TRACE_STEPS=p60:24 timeout 150 $pipe --out "$out/pipeline_128p_trace_prefill.json" 2>&1 \
  | grep -v "Loading weights\|Writing model\|_warn_once\|UserWarning" | tail -24
timeout 100 $pipe --out "$out/pipeline_128p_b.json" 2>&1 | grep "device busy\|host: launch\|Traceback\|Error" | cut -c1-220; pages b
