#!/usr/bin/env bash
# Session 12, call 6 (as it ran; its new side failed at once: h2d.py lost its uploader table in that
# commit, since reverted): layout_ab of the ring's one-thread staging copy against torch's copy_ (the
# commit before), alternating, with the step timeline; then `docpipe bench engine`. Output in $1,
# $2 = the previous commit's tree.
set -u
out=${1:?output folder}
prev=${2:?previous tree}
source "$(dirname "$0")/lib.sh"
here=$(pwd)
for r in 1 2; do
  for side in new prev; do
    dir=$here; [ $side = prev ] && dir=$prev
    (cd "$dir" && PYTHONPATH=/tmp/site:$dir timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --timeline \
      --out "$out/layout_${side}_$r.json" 2>&1 | grep "timeline:\|pages/s" | sed "s/^/$side$r /")
  done
done
timeout 300 python3 -m docpipe.cli bench engine --out "$out/engine_h200_mineru2.5.json" 2>&1 | tail -16
