#!/usr/bin/env bash
# Session 13, call 7: half a step's prompt tokens admitted before a call's first step (the new default)
# vs a full step (DOCPIPE_FIRST_STEP_TOKENS=16384, the old rule), alternating twice, step timelines on;
# Triton vision attention on both sides (FA4 is installed in call 8). Keeps .fa4a for call 8. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
mkdir -p /tmp/fa4keep && cp "${REPO_ROOT:?}"/.fa4a/* /tmp/fa4keep/
for r in 1 2; do
  for f in half full; do
    tokens=""; [ $f = full ] && tokens=16384
    DOCPIPE_FIRST_STEP_TOKENS=$tokens DOCPIPE_VISION_ATTN=triton timeout 150 python3 -m inference.bench.layout_ab \
      --prepare ahead --timeline --out "$out/layout_first_${f}_$r.json" 2>&1 | grep "pages/s\|timeline:\|Error" | sed "s/^/first=$f: /"
  done
done
