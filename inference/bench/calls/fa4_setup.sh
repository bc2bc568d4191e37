# Sourced by device-call scripts from session 13 on: FlashAttention-4 (flash-attn-4 4.0.0b36, CuTe DSL
# 4.8.1 cu13) installed into /tmp/site from wheels and its compiler library, carried in two parts (a call
# carries at most 64 MiB with the tree): .fa4a (xz part 1, kept from the previous call on the same warm
# machine, also copied to /tmp/fa4keep) and .fa4b (part 2, the runtime library, the wheels).
first="${REPO_ROOT:?}"/.fa4a/ir.part.aa; [ -f "$first" ] || first=/tmp/fa4keep/ir.part.aa
[ -f "$first" ] || { echo "the first part (.fa4a) is gone: the machine was not kept between calls"; exit 3; }
cat "$first" "$REPO_ROOT"/.fa4b/ir.part.ab > /tmp/ir.so.xz
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$REPO_ROOT"/.fa4b/*.whl 2>&1 | tail -1
tar -xf "$REPO_ROOT"/.fa4b/cu13_rest.tar -C /tmp/site
python3 - /tmp/ir.so.xz "$REPO_ROOT/.fa4b/rt.so.xz" <<'PY'
import lzma, shutil, sys
pairs = [(sys.argv[1], "/tmp/site/nvidia_cutlass_dsl/dsl_packages/cutlass/_mlir/_mlir_libs/_cutlass_ir.cu13.cpython-312-x86_64-linux-gnu.so"),
         (sys.argv[2], "/tmp/site/nvidia_cutlass_dsl/cu13/lib/libcute_dsl_runtime.so")]
for src, dst in pairs:
    with lzma.open(src) as f, open(dst, "wb") as g:
        shutil.copyfileobj(f, g, 1 << 24)
PY
export PYTHONPATH=$PYTHONPATH:/tmp/site/nvidia_cutlass_dsl/dsl_packages
python3 -c "import flash_attn.cute; print('flash_attn.cute imports')" 2>&1 | tail -1
