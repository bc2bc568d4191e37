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
    dsts = [d for _, d in pairs]
    if len(set(dsts)) != len(dsts):
        raise ValueError("a destination block appears twice in the transfer")
    runs: list[Run] = []
    for src, dst in sorted(pairs):
        if src < 0 or dst < 0:
            raise ValueError(f"negative block id in pair ({src}, {dst})")
        last = runs[-1] if runs else None
        if last and src == last.src_block + last.num_blocks and dst == last.dst_block + last.num_blocks:
            runs[-1] = Run(last.src_block, last.dst_block, last.num_blocks + 1)
        else:
            runs.append(Run(src, dst, 1))
    return runs


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
