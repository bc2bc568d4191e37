#!/usr/bin/env bash
# Session 13, call 1: (1) the transfer GPU tests and one `docpipe bench pd` on the release-after-move
# change (session 12, landed unverified on a GPU); (2) where the vision flash kernel's time goes:
# leave-one-out variants and a 32-wide head-dim tail (s13_attn_probe.py), ncu's view of the kernel
# (if the runtime gives hardware counters); (3) the layout pass on fresh page images each pass vs the
# same 64 (the slow-first-upload hypothesis). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 150 python3 -m pytest -q -m gpu tests/inference/transfer -p no:cacheprovider 2>&1 | tail -4
pd_run c1 64
timeout 120 python3 inference/bench/calls/s13_attn_probe.py --out "$out/attn_probe.json" 2>&1 | tail -20
if command -v ncu >/dev/null; then
  timeout 120 ncu --clock-control none -k regex:_vision_flash_kernel -s 1 -c 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --metrics sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active,sm__pipe_shared_cycles_active.avg.pct_of_peak_sustained_active,regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio \
    python3 inference/bench/calls/s13_attn_probe.py --out /dev/null --ncu > "$out/ncu.txt" 2>&1
  echo "ncu rc $?"; grep -i "error\|pct\|stalled\|Occupancy\|Registers\|Shared Memory\|Throughput\|Block Limit" "$out/ncu.txt" | head -70
fi
for r in default fresh; do
  flag=""; [ $r = fresh ] && flag="--fresh-pages"
  timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --timeline $flag --out "$out/layout_$r.json" 2>&1 \
    | grep "timeline:\|pages/s" | sed "s/^/$r: /"
done
