"""The Triton vision flash-attention kernel against a float64 per-image reference.

Without a GPU the kernel runs under Triton's interpreter (TRITON_INTERPRET=1,
which must be set before triton is imported, so those cases run in one
subprocess: this file executed as a script). The interpreter multiplies
bf16 operands of tl.dot as their raw uint16 bits; the subprocess widens them
to fp32 first (exact), and rounds fp32 -> bf16 to nearest even as the GPU does
(it truncates), so bf16 loads, the bf16 rounding of P and bf16 stores are
exercised as on the device. Pass mark: ||out - ref|| / ||ref|| <= 1e-2 for 16-bit
inputs, <= 1e-5 for fp32, and no NaN. The sm_90 compile check needs no GPU
either; the timing-scale case needs one and is marked gpu.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TOL = {"float32": 1e-5, "bfloat16": 1e-2, "float16": 1e-2}
LENGTHS = [37, 64, 0, 130, 5]  # a zero-length image, one shorter than a KV tile, exact and partial tiles
# (name, head_dim, dtype, (block_m, block_n), q/k/v as views of a packed qkv?, TMA descriptors?)
INTERPRETER_CASES = [
    ("d80_fp32_packed", 80, "float32", (32, 16), True, False),
    ("d80_bf16_packed", 80, "bfloat16", (32, 16), True, False),
    ("d80_fp16_contiguous", 80, "float16", (64, 32), False, False),
    ("d64_fp32_packed", 64, "float32", (32, 16), True, False),
    ("d64_bf16_packed", 64, "bfloat16", (32, 16), True, False),
    ("d96_bf16_packed", 96, "bfloat16", (16, 32), True, False),
    ("d128_fp32_contiguous", 128, "float32", (32, 32), False, False),
    ("d80_fp32_packed_tma", 80, "float32", (32, 16), True, True),
    ("d80_bf16_packed_tma", 80, "bfloat16", (32, 16), True, True),
    ("d64_bf16_contiguous_tma", 64, "bfloat16", (16, 32), False, True),
    # tiles mode (the grid from a list of (image, query tile), as a CUDA graph replays it)
    ("d80_bf16_packed_tiled", 80, "bfloat16", (32, 16), True, False),
    ("d80_fp32_packed_tma_tiled", 80, "float32", (32, 16), True, True),
    ("d80_bf16_packed_tma_tiled_n32", 80, "bfloat16", (32, 32), True, True),
    # lazy_rescale; "ramp": keys grow along the image, so some tiles move the reference max, others not
    ("d80_bf16_packed_tma_lazy_ramp", 80, "bfloat16", (32, 16), True, True),
    ("d80_fp32_packed_lazy_ramp", 80, "float32", (32, 16), True, False),
    ("d80_bf16_packed_tiled_lazy", 80, "bfloat16", (32, 16), True, False),
]
PAD_ROWS = 20  # tiled cases: rows past the images, covered by no tile (a graph's padding)
ROOT = Path(__file__).resolve().parents[3]


def reference(q, k, v, cu_seqlens, scale):
    out = torch.zeros(q.shape, dtype=torch.float64, device=q.device)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        qi, ki, vi = (t[start:end].double().transpose(0, 1) for t in (q, k, v))
        weights = torch.softmax(qi @ ki.transpose(1, 2) * scale, dim=-1)
        out[start:end] = (weights @ vi).transpose(0, 1)
    return out


def make_inputs(lengths, heads, head_dim, dtype, packed, device="cpu"):
    tokens = sum(lengths)
    if packed:
        q, k, v = torch.randn(tokens, 3, heads, head_dim, dtype=dtype, device=device).unbind(1)
    else:
        q, k, v = (torch.randn(tokens, heads, head_dim, dtype=dtype, device=device) for _ in range(3))
    cu = torch.tensor([0] + lengths).cumsum(0).to(device=device, dtype=torch.int32)
    return q, k, v, cu


def lazy_decisions(q, k, cu_seqlens, scale, block_m, block_n) -> dict:
    """How many KV tiles after an image's first would move the lazy reference max (some row's tile max
    above it by more than RESCALE_LOG2, in the kernel's scaled base-2 units) and how many would not."""
    from inference.ops.cuda.vision_flash import RESCALE_LOG2, _LOG2E

    moves = keeps = 0
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        s = torch.einsum("qhd,khd->hqk", q[start:end].double(), k[start:end].double()) * scale * _LOG2E
        for rows in (head[m0:m0 + block_m] for head in s for m0 in range(0, end - start, block_m)):
            ref = rows[:, :block_n].amax(-1)  # one program: a head's query tile
            for n0 in range(block_n, end - start, block_n):
                tile = rows[:, n0:n0 + block_n].amax(-1)
                if (tile - ref).max() > RESCALE_LOG2.value:
                    moves += 1
                    ref = torch.maximum(ref, tile)
                else:
                    keeps += 1
    return {"moves": moves, "keeps": keeps}


def rel_err(out, ref) -> float:
    assert not torch.isnan(out).any(), "output holds NaN (an element left unwritten?)"
    return ((out.double() - ref).norm() / ref.norm()).item()


def _interpreter_main() -> None:
    """Run INTERPRETER_CASES under the interpreter; print one JSON line per case."""
    import numpy as np
    import triton.language as tl
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle

    create_dot = InterpreterBuilder.create_dot

    def widen(h):  # bf16 is held as raw uint16 bits: put them in an fp32's high half
        if h.dtype == tl.bfloat16:
            return TensorHandle((h.data.astype(np.uint32) << 16).view(np.float32), tl.float32)
        return h

    InterpreterBuilder.create_dot = lambda self, a, b, d, *rest: create_dot(self, widen(a), widen(b), d, *rest)
    cast_impl = InterpreterBuilder.cast_impl

    def round_nearest(self, src, dst_type):  # the interpreter truncates fp32 -> bf16; the GPU rounds to nearest even
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            bits = torch.from_numpy(np.ascontiguousarray(src.data)).to(torch.bfloat16).view(torch.int16).numpy()
            return TensorHandle(bits.view(np.uint16), tl.bfloat16)
        return cast_impl(self, src, dst_type)

    InterpreterBuilder.cast_impl = round_nearest
    from inference.ops.cuda.vision_flash import FlashConfig, flash_tiles, tma_eligible, vision_flash_attention

    torch.manual_seed(0)
    for name, head_dim, dtype, (block_m, block_n), packed, tma in INTERPRETER_CASES:
        tiled = "_tiled" in name
        q, k, v, cu = make_inputs(LENGTHS + [PAD_ROWS] * tiled, 2, head_dim, getattr(torch, dtype), packed)
        assert not tma or all(tma_eligible(x) for x in (q, k, v)), f"{name}: inputs not TMA-eligible"
        scale = head_dim ** -0.5
        config = FlashConfig(block_m, block_n, 4, 2, tma, lazy_rescale="_lazy" in name)
        counts = {}
        if "_ramp" in name:
            k.mul_((1 + 0.1 * torch.arange(k.shape[0], dtype=torch.float32)).to(k.dtype)[:, None, None])
            counts = lazy_decisions(q, k, cu, scale, block_m, block_n)
        if tiled:  # the padding rows are no image: cu_seqlens and the tiles end before them
            cu = cu[:-1]
            for t in (q, k, v):  # a graph's padding holds anything: NaN must not reach a real row
                t[int(cu[-1]):] = float("nan")
            tiles = torch.tensor(flash_tiles(LENGTHS, block_m, slots=16), dtype=torch.int32)
            out = vision_flash_attention(q, k, v, cu, 0, scale, config, tiles=tiles)
        else:
            out = vision_flash_attention(q, k, v, cu, max(LENGTHS), scale, config)
        result = dict(name=name, shape_ok=out.shape == q.shape and out.dtype == q.dtype and out.is_contiguous(),
                      **counts)
        real = int(cu[-1])
        try:
            result["rel_err"] = rel_err(out[:real], reference(q, k, v, cu, scale)[:real])
        except AssertionError as exc:
            result["error"] = str(exc)
        print(json.dumps(result), flush=True)


triton = pytest.importorskip("triton")  # not a CI dependency: everything below needs it

from inference.ops.cuda.vision_flash import (DEFAULT_CONFIG, split_head_dim,  # noqa: E402
                                             vision_flash_attention)


@pytest.fixture(scope="module")
def interpreted() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"interpreter run failed:\n{proc.stderr[-3000:]}"
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {row["name"]: row for row in rows}


@pytest.mark.parametrize("case", INTERPRETER_CASES, ids=[c[0] for c in INTERPRETER_CASES])
def test_interpreter_matches_reference(interpreted, case):
    name, _, dtype, _, _, _ = case
    row = interpreted[name]
    assert "error" not in row, row["error"]
    assert row["shape_ok"], "output must be a contiguous [T, H, D] tensor in q's dtype"
    assert row["rel_err"] <= TOL[dtype], f"{name}: rel err {row['rel_err']:.3e} > {TOL[dtype]}"
    if "_ramp" in name:  # both of the lazy step's paths ran
        assert row["moves"] > 0 and row["keeps"] > 0, row


@pytest.mark.parametrize("head_dim,parts", [(80, (64, 16)), (64, (64, 0)), (96, (64, 32)), (128, (128, 0)),
                                            (48, (32, 16)), (16, (16, 0))])
def test_split_head_dim(head_dim, parts):
    assert split_head_dim(head_dim) == parts


@pytest.mark.parametrize("head_dim", [8, 72, 112, 100])
def test_split_head_dim_rejects(head_dim):
    with pytest.raises(ValueError, match=str(head_dim)):
        split_head_dim(head_dim)


def test_rejects_mismatched_shapes_and_strides():
    q = torch.zeros(10, 2, 80)
    with pytest.raises(ValueError, match="shape"):
        vision_flash_attention(q, q[:9], q, torch.tensor([0, 10], dtype=torch.int32), 10, 0.1)
    strided = torch.zeros(10, 2, 160)[..., ::2]
    with pytest.raises(ValueError, match="contiguous"):
        vision_flash_attention(strided, strided, strided, torch.tensor([0, 10], dtype=torch.int32), 10, 0.1)


@pytest.mark.parametrize("config,tiled", [("default", False), ("default", True), ("graph", True)],
                         ids=["default-grid", "default-tiled", "graph-tiled"])
def test_configs_compile_for_sm90_without_spills_using_wgmma(config, tiled):
    from inference.bench.attn_vision_compile import compile_stats
    from inference.ops.cuda.vision_attention import graph_config

    stats = compile_stats(DEFAULT_CONFIG if config == "default" else graph_config(), head_dim=80, dtype="bf16",
                          arch=90, tiled=tiled)
    assert stats["stack_bytes"] == 0 and stats["local_bytes"] == 0, f"register spills: {stats}"
    assert stats["wgmma"] > 0 and stats["mma_sync"] == 0, f"dots not on Hopper's wgmma: {stats}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernel needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_cuda_layout_page_and_crops(dtype):
    lengths = [5476, 1200, 0, 300, 1]
    torch.manual_seed(0)
    q, k, v, cu = make_inputs(lengths, 16, 80, dtype, packed=True, device="cuda")
    torch.empty(1 << 26, device="cuda").fill_(float("nan"))  # unwritten outputs would read NaN
    out = vision_flash_attention(q, k, v, cu, max(lengths), 80 ** -0.5)
    err = rel_err(out, reference(q, k, v, cu, 80 ** -0.5))  # float64 on the device
    assert err <= (1e-5 if dtype == torch.float32 else 1e-2), f"rel err {err:.3e}"

def test_config_names_parse_back():
    from inference.ops.cuda.vision_flash import FlashConfig

    for config in (FlashConfig(), FlashConfig(64, 64, 4, 2, True, maxnreg=128), FlashConfig(128, 64, 4, 3, True),
                   FlashConfig(128, 64, 8, 3, True, maxnreg=128, lazy_rescale=True, exp_bf16=True)):
        assert FlashConfig.parse(config.name) == config
    assert FlashConfig.parse("m128n64w8s3tmaxbr128").exp_bf16
    assert FlashConfig.parse("m128n64w8s3tmar128").launch_options() == dict(num_warps=8, num_stages=3, maxnreg=128)
    assert "maxnreg" not in FlashConfig().launch_options()
    with pytest.raises(ValueError, match="config name"):
        FlashConfig.parse("m128n64")


def test_register_cap_keeps_two_ctas_an_sm_without_spills():
    """8 warps with TMA take 142 registers a thread uncapped (one 256-thread CTA an SM); capped at 128
    they fit two, with nothing spilled."""
    from inference.bench.attn_vision_compile import compile_stats
    from inference.ops.cuda.vision_flash import FlashConfig

    stats = compile_stats(FlashConfig(128, 64, 8, 3, True, maxnreg=128), head_dim=80, dtype="bf16", arch=90,
                          tiled=True)
    assert stats["n_regs"] <= 128, stats
    assert stats["stack_bytes"] == 0 and stats["local_bytes"] == 0, f"register spills: {stats}"


def test_bf16_exponentials_only_for_bf16_inputs_and_half_the_sfu_ops():
    """exp_bf16: the kernel's P comes from ex2.approx.ftz.bf16x2 (two scores an op) for bf16 inputs;
    fp16 and fp32 inputs keep the fp32 exponentials (the flag does not apply)."""
    import re

    import triton

    from inference.bench.attn_vision_compile import compile_stats
    from inference.ops.cuda.vision_flash import FlashConfig, kernel_constexprs

    config = FlashConfig(64, 64, 4, 3, True, exp_bf16=True)
    assert kernel_constexprs(80, torch.bfloat16, config, True)["EXPB16"]
    assert not kernel_constexprs(80, torch.float16, config, True)["EXPB16"]
    assert not kernel_constexprs(80, torch.float32, config, True)["EXPB16"]
    ptx = {}
    compile_ = triton.compile

    def keep_ptx(*args, **kwargs):
        compiled = compile_(*args, **kwargs)
        ptx[len(ptx)] = compiled.asm["ptx"]
        return compiled
    triton.compile = keep_ptx
    try:
        for c in (FlashConfig(64, 64, 4, 3, True), config):
            stats = compile_stats(c, head_dim=80, dtype="bf16", arch=90, tiled=True)
            assert stats["stack_bytes"] == 0 and stats["wgmma"] > 0, stats
    finally:
        triton.compile = compile_
    f32 = [len(re.findall(r"ex2\.approx\.(?:ftz\.)?f32", p)) for p in ptx.values()]
    pairs = [p.count("ex2.approx.ftz.bf16x2") for p in ptx.values()]
    assert pairs[0] == 0 and pairs[1] > 0 and f32[1] < f32[0] // 4  # only the rescale factors stay fp32
    assert 2 * pairs[1] + f32[1] == f32[0]  # every score still exponentiated once


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernel needs a CUDA device")
@pytest.mark.parametrize("name", ["m128n64w4s3tmaxb", "m128n64w8s3tmaxbr128", "m64n64w4s3tmaxb", "m128n64w4s3tmalzxb"])
@pytest.mark.parametrize("tiled", [False, True])
def test_cuda_bf16_exponentials_match_the_reference(name, tiled):
    from inference.ops.cuda.vision_flash import FlashConfig
    from inference.ops.tiles import flash_tiles, tile_slots

    config = FlashConfig.parse(name)
    lengths = [5476, 1200, 1, 300, 77]
    torch.manual_seed(0)
    q, k, v, cu = make_inputs(lengths, 16, 80, torch.bfloat16, packed=True, device="cuda")
    slots = tile_slots(sum(lengths), config.block_m, len(lengths)) + 3  # -1 padding entries too
    tiles = torch.tensor(flash_tiles(lengths, config.block_m, slots), dtype=torch.int32, device="cuda") if tiled else None
    out = vision_flash_attention(q, k, v, cu, max(lengths), 80 ** -0.5, config, tiles=tiles)
    err = rel_err(out, reference(q, k, v, cu, 80 ** -0.5))
    assert err <= 1e-2, f"{name}: rel err {err:.3e}"


if __name__ == "__main__":
    _interpreter_main()
