#!/usr/bin/env bash
# Session 5, call 6 (last): graph captures without torch.cuda.graph()'s
# synchronize + empty_cache, and eager steps padded to 256-token multiples
# (cuBLAS picks a kernel per new shape, ~0.5 ms host each: call 5), A/B on one
# machine against the session's earlier behaviour (DOCPIPE_TORCH_GRAPH_CAPTURE=1
# and --prefill-pad-tokens 0); GPU tests of the graph paths first; then PD
# after the handoff changes (stage timeline). Output in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s5_final.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 100 python3 -m pytest -q -m gpu tests/inference/worker tests/inference/test_processor_host.py tests/inference/transfer 2>&1 | tail -2
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
show() { grep "device busy\|host: launch\|allocator\|Triton kernels" | cut -c1-200; }
pages() { python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['sides'][0]; print(sys.argv[2], 'pages/s', round(s['pages_per_s'],3))" "$out/pipeline_128p_$1.json" $1; }
timeout 100 $pipe --out "$out/pipeline_128p_new_a.json" 2>&1 | show; pages new_a
DOCPIPE_TORCH_GRAPH_CAPTURE=1 timeout 100 $pipe --prefill-pad-tokens 0 --out "$out/pipeline_128p_old_a.json" 2>&1 | show; pages old_a
timeout 100 $pipe --out "$out/pipeline_128p_new_b.json" 2>&1 | show; pages new_b
timeout 100 $pipe --prefill-pad-tokens 0 --out "$out/pipeline_128p_nopad.json" 2>&1 | show; pages nopad
timeout 100 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml --pages 16 \
  --out "$out/pd_h200_gpu-1p1d-mps.json" > "$out/pd_gpu-1p1d-mps.log" 2>&1; grep -v "Loading weights\|Writing model" "$out/pd_gpu-1p1d-mps.log" | tail -16
