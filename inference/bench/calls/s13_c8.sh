#!/usr/bin/env bash
# Session 13, call 8: the final code with FA4 installed (fa4_setup.sh): the layout pass twice (all
# candidates timed; FA4 chosen), then `docpipe bench engine` (the issue's table). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fa4_setup.sh"
for r in 1 2; do
  timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --timeline --out "$out/layout_$r.json" 2>&1 \
    | grep "pages/s\|timeline:\|Error" | sed "s/^/final $r: /"
done
timeout 330 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 | grep -v "Writing\|Loading\|UserWarning\|exe_args" | tail -9
