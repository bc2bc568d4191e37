#!/usr/bin/env bash
# Session 9, call 5. (1) The warp-specialized Gluon flash draft (not in the product; its folder is
# copied into the working tree as gluon_try/ for this call): correctness and timing of two variants
# against the Triton kernel, each in its own process under a time limit (an mbarrier mistake hangs).
# (2) Where the PD decode worker's loop goes while page bursts land (call 4: the slowest titles'
# decode steps averaged 2.8-4 ms against ~1.7 ms for long outputs): PD gpu-1p1d-mps 16 pages under
# py-spy (--subprocesses --nonblocking, raw stacks per thread). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
if [ -d gluon_try ]; then
  (cd gluon_try && timeout 130 python3 check_gpu.py --repo .. --batches 4,16 --reps 5 --isolate 55 \
    --variants ws_m64s3j,ws_m64s3jr80 2>&1 | grep -v "^\s*$" | tail -24 | cut -c1-200)
fi
spy=$(command -v py-spy || echo /tmp/site/bin/py-spy)
timeout 150 $spy record --subprocesses --nonblocking --rate 250 --format raw --threads -o /tmp/pd_spy.txt -- \
  python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml --pages 16 \
  --out "$out/pd_h200_mps_spy.json" > "$out/pd_spy.log" 2>&1
grep "monolithic:\|disaggregated:\|  title  \|Traceback\|Error" "$out/pd_spy.log" | head; tail -3 "$out/pd_spy.log"
gzip -c /tmp/pd_spy.txt > "$out/pd_spy.txt.gz"; ls -la "$out"
