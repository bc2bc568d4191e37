#!/usr/bin/env bash
# One device call: the engine benchmark (ours vs transformers), the pipeline at
# 128 pages with device busy/idle from step events, the MPS PD identity bisect
# (fp32 with the SM-count fix, both roles at 100 %, bf16) and PD at 16 pages
# under MPS for TPOT. Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/engine_pd_h200.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 230 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tail -12
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
timeout 100 $pipe --out "$out/pipeline_128p.json" 2>&1 | tail -3
BISECT_BUDGET_S=130 timeout 150 bash inference/bench/calls/pd_mps_bisect.sh "$out/bisect" "fp32:ipc fp32:sm100 bf16:ipc" 2>&1 | grep -v "^\s*$" | tail -30
timeout 120 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml --pages 16 \
  --out "$out/pd_h200_gpu-1p1d-mps.json" 2>&1 | tail -4
