"""Offline (no GPU needed) sm_90 compile check of the vision flash-attention kernel.

    python3 -m inference.bench.attn_vision_compile [--out FILE.json] [--arch 90]

Compiles inference/ops/cuda/vision_flash.py's kernel for each benchmark config
with the argument specialisation a packed qkv [T, 3, H, D] view gets at run
time (pointers and strides divisible by 16), and reports per config: registers
per thread, stack frame bytes (where spilled registers go; 0 = no spills),
shared memory, and how many wgmma (Hopper's asynchronous warpgroup MMA) and
mma.sync instructions the PTX holds. compile_s is 0.x when Triton's cache hit.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import triton
from triton._utils import canonicalize_dtype
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from inference.config import DTYPES
from inference.ops.cuda.vision_flash import FlashConfig, _vision_flash_kernel, kernel_constexprs, split_head_dim

_SOURCES = ("q0_src", "q1_src", "k0_src", "k1_src", "v0_src", "v1_src")
_STRIDES = ("sqt", "sqh", "skt", "skh", "svt", "svh", "sot", "soh")


def _resource_usage(cubin: bytes) -> dict[str, int]:
    """REG / STACK / SHARED ... as cuobjdump reports them (the driver, which
    fills CompiledKernel.n_regs, is absent on a machine without a GPU)."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    return {key: int(value) for key, value in re.findall(r"([A-Z_]+):(\d+)", text)}


def compile_stats(config: FlashConfig, head_dim: int = 80, dtype: str = "bf16", arch: int = 90,
                  tiled: bool = False) -> dict:
    """Compile the kernel for `arch` and return its resource figures; dtype: a name in inference.config.DTYPES."""
    d0, d1 = split_head_dim(head_dim)
    torch_dtype = DTYPES[dtype]
    elem = canonicalize_dtype(torch_dtype)  # Triton's own name for a tensor's element type ("bf16", ...)
    signature = {}
    for name in _SOURCES:  # with TMA: one [rows, part width] descriptor per tensor and head-dim part
        rows = config.block_m if name[0] == "q" else config.block_n
        width = d1 if name[1] == "1" and d1 else d0
        signature[name] = f"tensordesc<{elem}[{rows}, {width}]>" if config.tma else f"*{elem}"
    signature.update(o_ptr=f"*{elem}", cu_ptr="*i32", tiles_ptr="*i32", scale_log2="fp32")
    signature.update({name: "i32" for name in _STRIDES})
    signature["num_heads"] = "i32"
    constexprs = kernel_constexprs(head_dim, torch_dtype, config, config.tma, tiled)  # as the launcher
    signature.update({name: "constexpr" for name in constexprs})
    names = _vision_flash_kernel.arg_names
    # what the launcher's specialisation sees for 16-byte aligned tensors and strides (3*H*D, D, ...)
    aligned = ("o_ptr", "cu_ptr", "tiles_ptr") + _STRIDES + (() if config.tma else _SOURCES)
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    src = ASTSource(fn=_vision_flash_kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    target = GPUTarget("cuda", arch, 32)
    started = time.perf_counter()
    compiled = triton.compile(src, target=target,
                              options=config.launch_options())
    seconds = time.perf_counter() - started
    ptx = compiled.asm["ptx"]
    usage = _resource_usage(compiled.asm["cubin"])
    return dict(config=config.name, **asdict(config), head_dim=head_dim, dtype=dtype, arch=arch,
                n_regs=usage["REG"], stack_bytes=usage.get("STACK", 0), local_bytes=usage.get("LOCAL", 0), shared_bytes=compiled.metadata.shared,
                wgmma=ptx.count("wgmma.mma_async"), mma_sync=ptx.count("mma.sync"),
                compile_s=round(seconds, 2))


def main() -> None:
    from inference.bench.attn_vision import CONFIGS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the rows as JSON here")
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--head-dim", type=int, default=80)
    args = parser.parse_args()
    rows = []
    print(f"{'config':<16}{'regs':>6}{'stack B':>8}{'smem KiB':>10}{'wgmma':>7}{'mma.sync':>9}{'compile s':>11}")
    for config in CONFIGS:
        try:
            row = compile_stats(config, args.head_dim, arch=args.arch)
        except Exception as exc:  # a config the compiler rejects (e.g. too much shared memory) is a result too
            row = dict(config=config.name, error=f"{type(exc).__name__}: {exc}"[:500])
            print(f"{config.name:<16} ERROR {row['error'][:100]}")
            rows.append(row)
            continue
        rows.append(row)
        print(f"{row['config']:<16}{row['n_regs']:>6}{row['stack_bytes']:>8}{row['shared_bytes'] / 1024:>10.1f}"
              f"{row['wgmma']:>7}{row['mma_sync']:>9}{row['compile_s']:>11}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(triton=triton.__version__, arch=args.arch, head_dim=args.head_dim, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
