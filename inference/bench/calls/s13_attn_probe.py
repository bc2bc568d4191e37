"""Session 13 probe (a device-call record, not product code): where the vision flash kernel's time goes.

Builds variants of inference/ops/cuda/vision_flash.py by editing its source (each written to a temporary
module), times them on 16 layout pages (5,476 patches, 16 heads, D 80, bf16) and checks the ones that
should stay correct against the fp32 reference. Leave-one-out variants give wrong results on purpose:
they tell what a part of the loop costs.

    python3 inference/bench/calls/s13_attn_probe.py --out FILE.json [--ncu] [--configs A,B] [--variants base,...]

--ncu: the first config, variant base, three calls, for `ncu -k regex:_vision_flash_kernel`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import tempfile

import torch

from inference.bench.attn_vision import N, H, D, packed, poison, reference, rel_err, time_ms
from inference.ops.cuda.flash_config import FlashConfig

SRC = pathlib.Path(__file__).resolve().parents[2] / "ops" / "cuda" / "vision_flash.py"
PV1 = "acc1 = tl.dot(p, v1, acc1 * alpha[:, None], input_precision=PRECISION)\n    return m_new"
QK1 = "s = tl.dot(q1, tl.trans(k1), s, input_precision=PRECISION)"
EXP = "p = tl.math.exp2(x)"
SIG = '        EXPB16: tl.constexpr):\n    """*_src'
Q1 = "        q1 = _load_tile(q1_src, start, m0, h * sqh + D0, seq_len, sqt, BLOCK_M, D1, True, TMA)\n"
Q0 = "    q0 = _load_tile(q0_src, start, m0, h * sqh, seq_len, sqt, BLOCK_M, D0, True, TMA)\n"
STORE1 = "(acc1 * inv_l[:, None]).to(o_ptr.dtype.element_ty),\n                 mask=keep)"

EDITS = {
    "base": [],
    "no_pv1": [(PV1, "acc1 = acc1 * alpha[:, None]\n    return m_new")],
    "no_qk1": [(QK1, "s = s + 0.0")],
    "no_d1": [(PV1, "acc1 = acc1 * alpha[:, None]\n    return m_new"), (QK1, "s = s + 0.0")],
    # Q pre-multiplied by the softmax scale (log2 units) once, in registers: the loop drops a multiply a
    # score and Q K^T may take Q from registers (wgmma's register-A form) instead of shared memory
    "qscale": [(Q0, Q0 + "    q0 = (q0.to(tl.float32) * scale_log2).to(q0.dtype)\n"),
               (Q1, Q1 + "        q1 = (q1.to(tl.float32) * scale_log2).to(q1.dtype)\n"),
               ("m_tile = tl.max(s, 1) * scale_log2", "m_tile = tl.max(s, 1)"),
               ("_probs(s * scale_log2 - m_new[:, None]", "_probs(s - m_new[:, None]")],
    "no_exp": [(EXP, "p = x * 0.5 + 0.25")],
    "no_rescale": [("acc0 * alpha[:, None], input", "acc0, input"), ("acc1 * alpha[:, None], input", "acc1, input")],
    # the 16-wide head-dim part computed 32 wide (N=32 / K=32 dots): Q's extra columns zeroed, the extra
    # output columns not stored; correct, 20 % more FLOPs
    "pad32": [(SIG, SIG.replace("EXPB16: tl.constexpr)", "EXPB16: tl.constexpr, D1R: tl.constexpr)")),
              (Q1, Q1 + "        q1 = tl.where((tl.arange(0, D1) < D1R)[None, :], q1, 0.0)\n"),
              (STORE1, "(acc1 * inv_l[:, None]).to(o_ptr.dtype.element_ty),\n"
                       "                 mask=keep & (tl.arange(0, D1) < D1R)[None, :])")],
}
CORRECT = {"base", "pad32", "qscale"}


def build(name: str, folder: pathlib.Path):
    text = SRC.read_text()
    for old, new in EDITS[name]:
        if text.count(old) != 1:
            raise RuntimeError(f"{name}: {old[:40]!r} found {text.count(old)} times")
        text = text.replace(old, new)
    path = folder / f"vf_{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"vf_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if name == "pad32":
        module.split_head_dim = lambda d: (64, 32)
        constexprs = module.kernel_constexprs
        module.kernel_constexprs = lambda *a, **k: dict(constexprs(*a, **k), D1R=16)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--ncu", action="store_true")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--configs", default="m128n64w4s3tma,m128n64w8s3tmar128")
    parser.add_argument("--variants", default=",".join(EDITS))
    args = parser.parse_args()
    folder = pathlib.Path(tempfile.mkdtemp())
    q, k, v, cu = packed([N] * args.batch, H, D)
    scale = D ** -0.5
    if args.ncu:
        module = build("base", folder)
        for _ in range(3):
            module.vision_flash_attention(q, k, v, cu, N, scale, FlashConfig.parse(args.configs.split(",")[0]))
        torch.cuda.synchronize()
        return
    ref = reference(q, k, v, cu, scale)
    flops = 4 * N * N * D * H * args.batch
    rows = []
    for config in args.configs.split(","):
        for name in args.variants.split(","):
            row = dict(variant=name, config=config)
            try:
                module = build(name, folder)
                fn = lambda: module.vision_flash_attention(q, k, v, cu, N, scale, FlashConfig.parse(config))  # noqa: E731
                poison()
                row["rel_err"] = rel_err(fn(), ref)
                row["ms"], row["rep_ms"] = time_ms(fn, 7, 5)
                row["tflops_80"] = flops / row["ms"] / 1e9
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
            if "error" in row:
                print(f"{config:<22}{name:<12} ERROR {row['error'][:120]}", flush=True)
            else:
                flag = ("ok" if row["rel_err"] <= 1e-2 else "FAIL") if name in CORRECT else "(timing only)"
                print(f"{config:<22}{name:<12}{row['ms']:>9.3f} ms {row['tflops_80']:>7.1f} TFLOP/s(D80)"
                      f"  err {row['rel_err']:.2e} {flag}", flush=True)
    json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, batch=args.batch, rows=rows),
              open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
