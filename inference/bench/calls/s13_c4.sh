#!/usr/bin/env bash
# Session 13, call 4: FlashAttention-4 (flash-attn-4 4.0.0b36, CuTe DSL 4.8.1 cu13) on this machine from
# wheels and the compiler library carried in two parts (.fa4a kept from call 3, .fa4b); its kernel vs
# ours on layout pages (s13_fa4_probe.py); the layout pass choosing among all candidates (fa4 now one)
# vs DOCPIPE_VISION_ATTN=triton. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
first="${REPO_ROOT:?}"/.fa4a/ir.part.aa; [ -f "$first" ] || first=/tmp/fa4keep/ir.part.aa
[ -f "$first" ] || { echo "the first part (.fa4a) is gone: the machine was not kept between calls"; exit 3; }
ir=/tmp/ir.so.xz; cat "$first" "$REPO_ROOT"/.fa4b/ir.part.ab > $ir
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$REPO_ROOT"/.fa4b/*.whl 2>&1 | tail -1
python3 -c "import cuda.bindings" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$REPO_ROOT"/.fa4b/opt/cuda_bindings*.whl 2>&1 | tail -1
python3 -c "import google.protobuf" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$REPO_ROOT"/.fa4b/opt/protobuf*.whl 2>&1 | tail -1
tar -xf "$REPO_ROOT"/.fa4b/cu13_rest.tar -C /tmp/site
python3 - "$ir" "$REPO_ROOT/.fa4b/rt.so.xz" <<'PY'
import lzma, shutil, sys
pairs = [(sys.argv[1], "/tmp/site/nvidia_cutlass_dsl/dsl_packages/cutlass/_mlir/_mlir_libs/_cutlass_ir.cu13.cpython-312-x86_64-linux-gnu.so"),
         (sys.argv[2], "/tmp/site/nvidia_cutlass_dsl/cu13/lib/libcute_dsl_runtime.so")]
for src, dst in pairs:
    with lzma.open(src) as f, open(dst, "wb") as g:
        shutil.copyfileobj(f, g, 1 << 24)
print("unpacked")
PY
export PYTHONPATH=$PYTHONPATH:/tmp/site/nvidia_cutlass_dsl/dsl_packages
python3 -c "import flash_attn.cute as f; print('flash_attn.cute imports')" 2>&1 | tail -3
timeout 240 python3 inference/bench/calls/s13_fa4_probe.py --out "$out/fa4_probe.json" 2>&1 | grep -v "^\s*$" | tail -25
for a in auto triton; do
  DOCPIPE_VISION_ATTN=$a timeout 200 python3 -m inference.bench.layout_ab --prepare ahead --out "$out/layout_$a.json" 2>&1 \
    | grep "pages/s\|Error\|error" | sed "s/^/attn=$a: /"
  python3 -c "import json,sys; print('  choices', json.load(open(sys.argv[1]))['choices'])" "$out/layout_$a.json" 2>&1 | tail -1
done
