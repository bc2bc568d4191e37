"""Turn (src_block, dst_block) pairs into large contiguous copies.

In the pool layout one block of all layers is one contiguous region, so a run
of consecutive ids on both sides is one contiguous byte range on each side.
coalesce() finds those runs; plan_units() cuts them into byte segments of at
most max_unit_bytes and groups segments into work units of at least
min_unit_bytes (the last may be smaller), the unit every transport moves as
one frame / one chain of work requests / one batch of copies.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Run:
    src_block: int  # first source block id
    dst_block: int  # first destination block id
    num_blocks: int  # consecutive blocks on both sides


@dataclass(frozen=True)
class Segment:
    src_offset_bytes: int  # offset in the source pool
    dst_offset_bytes: int  # offset in the destination pool
    num_bytes: int  # contiguous length on both sides


@dataclass
class WorkUnit:
    segments: list[Segment] = field(default_factory=list)

    @property
    def num_bytes(self) -> int:
        return sum(s.num_bytes for s in self.segments)


def coalesce(pairs: list[tuple[int, int]]) -> list[Run]:
    """Merge pairs into maximal runs, reading the source in ascending order.
    Two pairs naming one destination block are an error (the result would
    depend on copy order)."""
    return coalesce_ids([s for s, _ in pairs], [d for _, d in pairs])


def coalesce_ids(src_ids: list[int], dst_ids: list[int]) -> list[Run]:
    """coalesce() over parallel id lists, vectorised: a long request has
    thousands of blocks and this runs on every transfer."""
    if len(src_ids) != len(dst_ids):
        raise ValueError(f"{len(src_ids)} source blocks vs {len(dst_ids)} destination blocks")
    if not src_ids:
        return []
    a = np.stack([np.asarray(src_ids, dtype=np.int64), np.asarray(dst_ids, dtype=np.int64)], axis=1)
    if (a < 0).any():
        src, dst = a[np.flatnonzero((a < 0).any(axis=1))[0]]
        raise ValueError(f"negative block id in pair ({src}, {dst})")
    if len(np.unique(a[:, 1])) != len(a):
        raise ValueError("a destination block appears twice in the transfer")
    a = a[np.lexsort((a[:, 1], a[:, 0]))]  # by source, then destination
    breaks = np.flatnonzero((np.diff(a[:, 0]) != 1) | (np.diff(a[:, 1]) != 1)) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(a)]))
    return [Run(int(a[s, 0]), int(a[s, 1]), int(e - s)) for s, e in zip(starts, ends)]


def plan_units(runs: list[Run], block_bytes: int, min_unit_bytes: int, max_unit_bytes: int) -> list[WorkUnit]:
    """Byte segments (each <= max_unit_bytes) grouped into units >= min_unit_bytes."""
    if block_bytes < 1 or not 0 < min_unit_bytes <= max_unit_bytes:
        raise ValueError("need block_bytes >= 1 and 0 < min_unit_bytes <= max_unit_bytes")
    units: list[WorkUnit] = []
    unit, unit_bytes = WorkUnit(), 0
    for run in runs:
        src, dst, left = run.src_block * block_bytes, run.dst_block * block_bytes, run.num_blocks * block_bytes
        while left:
            n = min(left, max_unit_bytes)
            unit.segments.append(Segment(src, dst, n))
            src, dst, left, unit_bytes = src + n, dst + n, left - n, unit_bytes + n
            if unit_bytes >= min_unit_bytes:
                units.append(unit)
                unit, unit_bytes = WorkUnit(), 0
    if unit.segments:
        units.append(unit)
    return units
