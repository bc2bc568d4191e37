#!/usr/bin/env bash
# Session 13, call 3: the layout pass with generate() freezing older objects for the call (the new
# default) vs DOCPIPE_GC_FREEZE=0, alternating, each timed pass's collector pauses recorded. Also keeps
# the first part of the CuTe DSL compiler library (.fa4a, carried here; too large for one call) on the
# machine for call 4, and lists what the image has of FA4's dependencies. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
mkdir -p /tmp/fa4keep && cp "${REPO_ROOT:?}"/.fa4a/* /tmp/fa4keep/ && ls -la /tmp/fa4keep
python3 -c "import cuda.bindings; print('image has cuda.bindings', cuda.bindings.__version__)" 2>&1 | tail -1
python3 -c "import google.protobuf as p; print('image has protobuf', p.__version__)" 2>&1 | tail -1
python3 -m pip list 2>/dev/null | grep -i "cutlass\|flash\|quack\|tvm\|cuda-python\|cuda-bindings\|einops"
for r in 1 2; do
  for g in 1 0; do
    DOCPIPE_GC_FREEZE=$g timeout 150 python3 -m inference.bench.layout_ab --prepare ahead --out "$out/layout_gc${g}_$r.json" 2>&1 \
      | grep "pages/s\|Error" | sed "s/^/gc_freeze=$g: /"
  done
done
