#!/usr/bin/env bash
# One device call (session 4): GPU op + uploader tests, where the host syncs
# (DOCPIPE_SYNC_DEBUG over 32 pages), the pipeline at 128 pages with the
# pinned upload ring on / off / on (A/B on one machine), and PD under MPS
# client priorities (disaggregated side first). Output lands in $1.
# Usage (repo root, GPU machine, wheels installed): bash inference/bench/calls/s4_host.sh OUT
set -u
out=${1:?output folder}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 150 python3 -m pytest -q -m gpu tests/inference/ops tests/inference/worker 2>&1 | tail -3
pipe="python3 -m docpipe.cli bench pipeline --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
DOCPIPE_SYNC_DEBUG=1 timeout 100 $pipe --pages 32 --window 32 --out "$out/pipeline_32p_syncdebug.json" 2>&1 | tail -16
timeout 100 $pipe --pages 128 --window 128 --out "$out/pipeline_128p_ring_a.json" 2>&1 | tail -4
DOCPIPE_PINNED_RING_MB=0 timeout 100 $pipe --pages 128 --window 128 --out "$out/pipeline_128p_noring.json" 2>&1 | tail -4
timeout 100 $pipe --pages 128 --window 128 --out "$out/pipeline_128p_ring_b.json" 2>&1 | tail -4
timeout 170 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps-priority.toml --pages 16 \
  --out "$out/pd_h200_gpu-1p1d-mps-priority.json" > "$out/pd_log.txt" 2>&1; tail -5 "$out/pd_log.txt"
