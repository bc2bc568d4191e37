#!/usr/bin/env bash
# Third device call of session 6: a step timeline of the 128-page pipeline (where the device waits
# for the host, by phase and host op) next to a plain run; PD on one H200 with the per-kind TPOT
# table, the GIL switch interval of the PD processes at Python's 5 ms vs the new 0.5 ms. Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s6_c3.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
pages() { python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['sides'][0]; print(sys.argv[2], 'pages/s', round(s['pages_per_s'],3))" "$out/pipeline_128p_$1.json" $1; }
timeout 100 $pipe --out "$out/pipeline_128p_default.json" 2>&1 | grep "device busy\|host: launch\|Traceback\|Error" | cut -c1-220; pages default
DOCPIPE_TRACE=$out/trace_128p.json.gz DOCPIPE_TRACE_STEPS=60:20 timeout 150 $pipe --out "$out/pipeline_128p_trace.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -30; pages trace
for gil in 5 0.5; do
  DOCPIPE_GIL_SWITCH_MS=$gil timeout 150 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml \
    --pages 16 --out "$out/pd_h200_mps_gil$gil.json" > "$out/pd_gil$gil.log" 2>&1
  echo "== GIL switch $gil ms"; grep -v "Loading weights\|Writing model\|CudaIPCTypes" "$out/pd_gil$gil.log" | tail -28
done
