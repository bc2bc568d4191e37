#!/usr/bin/env bash
# Last device call of session 6 (c8 was two runs on c7's warm machine: warm-up 24 vs 64 pages).
# With the encoder graphs: pages in flight 128 / 64 / 32 (a smaller window lets later pages' layout
# requests overlap earlier pages' block requests). Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s6_c9.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
pages() { python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['sides'][0]; print(sys.argv[2], 'pages/s', round(s['pages_per_s'],3))" "$out/pipeline_128p_$1.json" $1; }
for w in 128 64 32; do
  timeout 75 $pipe --window $w --out "$out/pipeline_128p_w$w.json" 2>&1 | grep "device busy\|Traceback\|Error" | cut -c1-160; pages w$w
done
