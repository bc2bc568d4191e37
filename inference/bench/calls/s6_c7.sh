#!/usr/bin/env bash
# Seventh device call of session 6: graph-captured vision encoder calls (inference/worker/vision_graph.py).
# GPU tests (captured vs eager encoder, the tiled flash kernel), then the 128-page pipeline with the
# encoder graphs on, off (DOCPIPE_VISION_GRAPHS=0), on; the engine benchmark (layout prefill with
# the graphs). Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s6_c7.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 120 python3 -m pytest -q -m gpu tests/inference/worker tests/inference/ops/test_vision_flash.py 2>&1 | tail -4
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
pages() { python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['sides'][0]; print(sys.argv[2], 'pages/s', round(s['pages_per_s'],3))" "$out/pipeline_128p_$1.json" $1; }
show() { grep "device busy\|host: launch\|vision encoder graphs\|allocator\|Traceback\|Error\|graph capture failed" | cut -c1-220; }
timeout 100 $pipe --out "$out/pipeline_128p_vgraph_a.json" 2>&1 | show; pages vgraph_a
DOCPIPE_VISION_GRAPHS=0 timeout 100 $pipe --out "$out/pipeline_128p_veager.json" 2>&1 | show; pages veager
timeout 100 $pipe --out "$out/pipeline_128p_vgraph_b.json" 2>&1 | show; pages vgraph_b
timeout 150 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 | grep -v "Loading weights\|Writing model" | tail -9
