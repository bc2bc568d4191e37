#!/usr/bin/env bash
# First device call of session 6: what session 5 landed after its last call.
# GPU tests (incl. the sampler graph test that grows the token history mid-run:
# the dead-pool fix, never run on a GPU), then the pipeline at 128 pages:
# default x2 around one run with the captured sampler off, then a kernel-table run with a long limit (session 5's c7 ran out at
# 110 s). Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s6_first.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 90 python3 -m pytest -q -m gpu tests/inference/worker tests/inference/test_processor_host.py tests/inference/test_h2d.py 2>&1 | tail -3
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
show() { grep "device busy\|host: launch\|allocator\|Triton kernels\|sampler graph\|Traceback\|Error" | cut -c1-220; }
pages() { python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['sides'][0]; print(sys.argv[2], 'pages/s', round(s['pages_per_s'],3))" "$out/pipeline_128p_$1.json" $1; }
timeout 100 $pipe --out "$out/pipeline_128p_default_a.json" 2>&1 | show; pages default_a
DOCPIPE_SAMPLER_GRAPHS=0 timeout 100 $pipe --out "$out/pipeline_128p_sampler_eager.json" 2>&1 | show; pages sampler_eager
timeout 100 $pipe --out "$out/pipeline_128p_default_b.json" 2>&1 | show; pages default_b
DOCPIPE_PROFILE_KERNELS=1 timeout 185 $pipe --out "$out/pipeline_128p_kernels.json" 2>&1 | grep -v "Loading weights\|Writing model" | tail -32
