#!/usr/bin/env bash
# Prepared in session 9 for the next session's first device call. (1) cuda-ipc transfer bench: the
# pipelined figure now goes through send_many (one group, as the prefill worker sends), and each size
# also times the device copy into the receiver's pool through the IPC mapping (session 5: ours 16-19 %
# of the device copy up to 64 MiB, 48 % at 256 MiB; the must-show is >= 80 %). (2) GPU tests of the
# cuda-ipc groups. (3) PD on 64 pages twice (session 9: TPOT p99 3.4-4.8x below monolithic at
# 0.95-1.05 of its throughput). (4) The 128-page pipeline. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --repeat 3 \
  --out "$out/transfer_cuda_ipc.json" 2>&1 | tail -12
timeout 100 python3 -m pytest -q -m gpu tests/inference/transfer/test_cuda_ipc_plan.py tests/inference/transfer/test_registry.py 2>&1 | tail -2
for name in a b; do
  timeout 170 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml --pages 64 \
    --out "$out/pd_h200_mps_p64$name.json" > "$out/pd_p64$name.log" 2>&1
  echo "== p64$name"; grep "monolithic:\|disaggregated:\|  title  \|Traceback\|Error" "$out/pd_p64$name.log" | head -6
done
rm -f "$out"/pd_p64*.log
timeout 110 $pipe --out "$out/pipeline_128p_a.json" 2>&1 | show; pages a
