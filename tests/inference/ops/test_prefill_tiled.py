"""The paged prefill kernel's tiled launch (a CUDA graph's shape) against the reference op, on the
CPU under Triton's interpreter (TRITON_INTERPRET=1 must be set before triton is imported: the
cases run in one subprocess, this file executed as a script). fp32 (exact products in the
interpreter): relative error <= 1e-5 on the real rows; padding rows after the batch, spare
tile slots, a chunk after a cached prefix and a one-token sequence."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
LENS_K, LENS_Q, PAD = [70, 37, 50, 9], [70, 37, 20, 1], 13


def _main() -> None:
    from inference.ops.cuda.prefill_attention import prefill_attention, tiles_block_m
    from inference.ops.reference.ops import ReferenceOps
    from inference.ops.tiles import flash_tiles, tile_slots

    torch.manual_seed(0)
    block_size, heads, kv_heads, dim = 8, 4, 2, 32
    blocks = [-(-n // block_size) for n in LENS_K]
    k_cache, v_cache = (torch.randn(sum(blocks) + 2, block_size, kv_heads, dim) for _ in range(2))
    ids = torch.randperm(sum(blocks) + 2).to(torch.int32)
    table = torch.zeros(len(LENS_K), max(blocks) + 1, dtype=torch.int32)
    used = 0
    for row, n in enumerate(blocks):
        table[row, :n] = ids[used:used + n]
        used += n
    cu = torch.tensor([0] + LENS_Q).cumsum(0).to(torch.int32)
    lens_k = torch.tensor(LENS_K, dtype=torch.int32)
    q = torch.randn(sum(LENS_Q) + PAD, heads, dim)
    block_m = tiles_block_m(torch.float32)
    tiles = torch.tensor(flash_tiles(LENS_Q, block_m, tile_slots(q.shape[0], block_m, 6)), dtype=torch.int32)
    scale = dim ** -0.5
    out = prefill_attention(q, k_cache, v_cache, cu, lens_k, table, scale, 0, 0, tiles=tiles)
    ref = ReferenceOps().prefill_attention(q.double(), k_cache.double(), v_cache.double(), cu, lens_k, table,
                                           scale, max(LENS_Q), max(LENS_K))
    real = sum(LENS_Q)
    err = ((out[:real].double() - ref[:real]).norm() / ref[:real].norm()).item()
    print(json.dumps({"rel_err": err, "nan": bool(torch.isnan(out[:real]).any())}), flush=True)


pytest.importorskip("triton")  # not a CI dependency


def test_tiled_prefill_matches_the_reference_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"interpreter run failed:\n{proc.stderr[-3000:]}"
    row = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("{")))
    assert not row["nan"] and row["rel_err"] <= 1e-5, row


if __name__ == "__main__":
    _main()
