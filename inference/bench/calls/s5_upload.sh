#!/usr/bin/env bash
# Session 5, call 4: image upload + patchify on an upload thread (EngineRunner)
# vs on the step thread, alternating on one machine; packed batch fields
# 16-byte aligned (fewer Triton specialisations: the first run shows what a
# fresh machine still builds inside the timed run). GPU tests first. Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s5_upload.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 120 python3 -m pytest -q -m gpu tests/inference/test_processor_host.py tests/inference/test_h2d.py tests/inference/worker tests/inference/ops 2>&1 | tail -3
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
show() { grep -v "Loading weights\|Writing model\|^side\|vision attention choices" | tail -6; }
for run in thread_a inline_a thread_b inline_b; do
  flag=1; [[ $run == inline* ]] && flag=0
  DOCPIPE_UPLOAD_THREAD=$flag timeout 100 $pipe --out "$out/pipeline_128p_upload_$run.json" 2>&1 | show
  python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['sides'][0]; print(sys.argv[2], 'pages/s', round(s['pages_per_s'],3))" "$out/pipeline_128p_upload_$run.json" $run
done
