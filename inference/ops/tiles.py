"""Tile lists for attention launches sized by a list instead of the batch.

A flash-attention launch over a batch normally has a grid of (query tiles of
the longest sequence, sequences, heads): its size changes with every batch,
so it cannot be replayed from a CUDA graph captured for another batch. The
tiled launches (vision_flash, prefill_attention with `tiles`) take a list of
(sequence, query tile) entries instead, packed as sequence << 16 | tile, with
-1 for unused slots; the grid is the list's length, fixed per graph.
"""
from __future__ import annotations


def flash_tiles(lengths: list[int], block_m: int, slots: int) -> list[int]:
    """The list for sequences of `lengths` query rows: sequence << 16 | query tile for every
    tile of every sequence, then -1 up to `slots` entries. Raises when they do not fit."""
    tiles = [b << 16 | m for b, n in enumerate(lengths) for m in range(-(-n // block_m))]
    if len(tiles) > slots or len(lengths) > 1 << 15 or max(lengths, default=0) > block_m << 16:
        raise ValueError(f"{len(lengths)} sequences ({len(tiles)} query tiles) do not fit {slots} tile slots")
    return tiles + [-1] * (slots - len(tiles))


def tile_slots(num_rows: int, block_m: int, num_seqs: int) -> int:
    """Slots that always hold the tiles of up to `num_seqs` sequences of `num_rows` rows in all."""
    return -(-num_rows // block_m) + num_seqs
