#!/usr/bin/env bash
# Fifth device call of session 6: where prefill steps wait for the device. c4's timeline showed a
# cudaStreamSynchronize under the sampler's aten::to in prefill steps (139 ms once: the whole step's
# device work). Torch's sync debug mode names the call site; a step timeline mid-run (crop
# prefills between decode steps) with the profiler warmed up first. Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s6_c5.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
DOCPIPE_SYNC_DEBUG=1 timeout 150 $pipe --out "$out/pipeline_128p_syncs.json" 2>&1 | grep "host sync\|device busy\|Traceback\|Error" | cut -c1-300
DOCPIPE_TRACE=$out/trace_128p_mid.json.gz DOCPIPE_TRACE_STEPS=420:30 timeout 150 $pipe --out "$out/pipeline_128p_trace_mid.json" 2>&1 \
  | grep -v "Loading weights\|Writing model\|_warn_once\|UserWarning" | tail -24
