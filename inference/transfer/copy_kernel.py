"""One kernel launch that copies every run of a chunk of cuda-ipc transfers.

The host cost of a chunk's copies otherwise grows with its runs: one cudaMemcpyAsync each (a few us
of driver and Python time apiece, and a GIL round trip around each ctypes call, with the sender's
ACK reader thread contending for it). Here the chunk's runs go up as one table of int64
(source word, destination word, words), through the pinned upload ring, and one Triton launch on
the caller's current stream copies them all: grid (tiles of the longest run, runs), each program one
TILE of 8-byte words of one run (programs past a shorter run's end return at once).

Runs are whole KV blocks; a pool's block is a multiple of 16 bytes in every layout docpipe makes
(layers x 2 x tokens x heads x head_dim elements), so the words are copied as aligned pairs
(16-byte loads and stores). `usable` says whether a chunk qualifies (every offset and length a
multiple of ALIGN_BYTES, both pools' base pointers too); callers copy others run by run.
"""
from __future__ import annotations

import torch

from inference.h2d import to_device

ALIGN_BYTES = 16
TILE_WORDS = 8192  # 64 KiB a program
MAX_RUNS = 65535  # a launch's second grid dimension
_kernel = None


def _build():
    import triton
    import triton.language as tl

    @triton.jit
    def copy_runs(src, dst, table, TILE: tl.constexpr):
        run = tl.program_id(1)
        n = tl.load(table + run * 3 + 2)
        start = tl.program_id(0).to(tl.int64) * TILE
        if start < n:
            s = tl.multiple_of(tl.load(table + run * 3), 2)
            d = tl.multiple_of(tl.load(table + run * 3 + 1), 2)
            idx = start + tl.arange(0, TILE)
            mask = idx < tl.multiple_of(n, 2)
            tl.store(dst + d + idx, tl.load(src + s + idx, mask=mask), mask=mask)

    return copy_runs


def usable(src: torch.Tensor, dst: torch.Tensor, copies: list[tuple[int, int, int]]) -> bool:
    """True when one launch may copy `copies` ((src offset, dst offset, bytes)) between the flat
    byte tensors src and dst: every figure and both base pointers 16-byte aligned."""
    if src.data_ptr() % ALIGN_BYTES or dst.data_ptr() % ALIGN_BYTES:
        return False
    return all(not (s % ALIGN_BYTES or d % ALIGN_BYTES or n % ALIGN_BYTES) for s, d, n in copies)


def copy_runs(src: torch.Tensor, dst: torch.Tensor, copies: list[tuple[int, int, int]]) -> None:
    """Copy every (src offset, dst offset, bytes) of `copies` from src to dst (flat uint8 tensors on
    one device, or dst a peer's IPC mapping) in one launch on the current stream, not waited for.
    The caller checked `usable` and the bounds. Nothing to copy launches nothing."""
    global _kernel
    copies = [c for c in copies if c[2]]
    if not copies:
        return
    if _kernel is None:
        _kernel = _build()
    table = to_device([v // 8 for c in copies for v in c], src.device, torch.int64)  # bytes -> words
    longest = max(n for _, _, n in copies) // 8
    grid = (-(-longest // TILE_WORDS), len(copies))
    _kernel[grid](src.view(torch.int64), dst.view(torch.int64), table, TILE=TILE_WORDS, num_warps=8)
