#!/usr/bin/env bash
# Session 13, call 2: vision flash launch shapes not measured before (64x128 tiles with 4 warps, two
# CTAs an SM; 128x128 with 8 warps capped at 168 registers; 128x64 capped at 168, three CTAs an SM)
# with and without Q pre-scaled (s13_attn_probe.py); ncu on the 64x128 kernel. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 200 python3 inference/bench/calls/s13_attn_probe.py --out "$out/attn_shapes.json" --variants base,qscale \
  --configs m128n64w4s3tma,m64n128w4s2tma,m128n128w8s2tmar168,m128n64w4s3tmar168,m128n128w8s2tma 2>&1 | tail -12
timeout 120 ncu --clock-control none -k regex:_vision_flash_kernel -s 1 -c 1 --section Occupancy --section WarpStateStats \
  --metrics regex:sm__pipe_tensor.*pct_of_peak_sustained_active,regex:sm__inst_executed_pipe_.*pct_of_peak_sustained_active,regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio \
  python3 inference/bench/calls/s13_attn_probe.py --out /dev/null --ncu --configs m64n128w4s2tma > "$out/ncu_m64n128.txt" 2>&1
echo "ncu rc $?"; grep -v "^==PROF==" "$out/ncu_m64n128.txt" | grep " [0-9.]*$" | grep -v " 0$\| 0.00$" | head -40
