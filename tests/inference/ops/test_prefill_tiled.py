"""The paged prefill kernel's tiled launch (a CUDA graph's shape) on the CPU under Triton's
interpreter (TRITON_INTERPRET=1 must be set before triton is imported: the case runs in a
subprocess, this file executed as a script), in fp32 (exact products in the interpreter).

Graph-shaped inputs: the metadata at full size (cu_seqlens_q, context lengths, block table
rows and columns past the batch hold garbage), padding query rows of NaN, spare tile slots;
the batch mixes a fresh prompt, a chunk after a cached prefix, a decode row and a one-token
prompt. The real rows must equal the exact-size launch bit for bit and the reference op within
1e-5."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
LENS_K, LENS_Q = [70, 37, 50, 9, 1], [70, 37, 20, 1, 1]
MAX_SEQS, MAX_BLOCKS, BUCKET = 8, 20, 160


def _main() -> None:
    from inference.ops.cuda.prefill_attention import prefill_attention, tiles_block_m
    from inference.ops.reference.ops import ReferenceOps
    from inference.ops.tiles import flash_tiles, tile_slots

    torch.manual_seed(0)
    block_size, heads, kv_heads, dim = 8, 4, 2, 32
    blocks = [-(-n // block_size) for n in LENS_K]
    k_cache, v_cache = (torch.randn(sum(blocks) + 2, block_size, kv_heads, dim) for _ in range(2))
    ids = torch.randperm(sum(blocks) + 2).to(torch.int32)
    width = max(blocks)
    table = torch.zeros(len(LENS_K), width, dtype=torch.int32)
    used = 0
    for row, n in enumerate(blocks):
        table[row, :n] = ids[used:used + n]
        used += n
    cu = torch.tensor([0] + LENS_Q).cumsum(0).to(torch.int32)
    lens_k = torch.tensor(LENS_K, dtype=torch.int32)
    real = sum(LENS_Q)
    q = torch.randn(real, heads, dim)
    scale = dim ** -0.5
    exact = prefill_attention(q, k_cache, v_cache, cu, lens_k, table, scale, max(LENS_Q), max(LENS_K))
    ref = ReferenceOps().prefill_attention(q.double(), k_cache.double(), v_cache.double(), cu, lens_k, table,
                                           scale, max(LENS_Q), max(LENS_K))
    # graph-shaped: static buffers whose unused parts hold garbage
    garbage = 10 ** 6
    q_static = torch.full((BUCKET, heads, dim), float("nan"))
    q_static[:real] = q
    cu_static = torch.full((MAX_SEQS + 1,), garbage, dtype=torch.int32)
    cu_static[:len(cu)] = cu
    lens_static = torch.full((MAX_SEQS,), garbage, dtype=torch.int32)
    lens_static[:len(LENS_K)] = lens_k
    table_static = torch.full((MAX_SEQS, MAX_BLOCKS), garbage, dtype=torch.int32)
    table_static[:len(LENS_K), :width] = table
    block_m = tiles_block_m(torch.float32)
    tiles = torch.tensor(flash_tiles(LENS_Q, block_m, tile_slots(BUCKET, block_m, MAX_SEQS)), dtype=torch.int32)
    out = prefill_attention(q_static, k_cache, v_cache, cu_static, lens_static, table_static, scale, 0, 0,
                            tiles=tiles)
    got = out[:real]
    print(json.dumps({"nan": bool(torch.isnan(got).any()), "equal_exact_launch": bool(torch.equal(got, exact)),
                      "rel_err": ((got.double() - ref).norm() / ref.norm()).item()}), flush=True)


pytest.importorskip("triton")  # not a CI dependency


def test_graph_shaped_tiled_prefill_equals_the_exact_launch_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"interpreter run failed:\n{proc.stderr[-3000:]}"
    row = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("{")))
    assert not row["nan"] and row["equal_exact_launch"] and row["rel_err"] <= 1e-5, row


if __name__ == "__main__":
    _main()
