"""Turn (src_block, dst_block) pairs into large contiguous copies.

In the pool layout one block of all layers is one contiguous region, so a run
of consecutive ids on both sides is one contiguous byte range on each side.
coalesce() finds those runs (coalesce_runs() from ids already held as runs,
BlockIds); plan_units() cuts them into byte segments of at
most max_unit_bytes and groups segments into work units of at least
min_unit_bytes (the last may be smaller), the unit every transport moves as
one frame / one chain of work requests / one batch of copies.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class Run(NamedTuple):  # built per transfer: a NamedTuple costs half a frozen dataclass
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
    """coalesce() over parallel id lists. This runs on every transfer: one
    consecutive run on both sides (a fresh allocation, the common case) is
    recognised in O(n) C-level compares; short lists go through a plain loop;
    long scattered ones are vectorised."""
    n = len(src_ids)
    if n != len(dst_ids):
        raise ValueError(f"{n} source blocks vs {len(dst_ids)} destination blocks")
    if not n:
        return []
    s0, d0 = src_ids[0], dst_ids[0]
    if s0 >= 0 and d0 >= 0 and src_ids == list(range(s0, s0 + n)) and dst_ids == list(range(d0, d0 + n)):
        return [Run(s0, d0, n)]
    if n <= _LOOP_MAX_IDS:
        return _coalesce_loop(src_ids, dst_ids)
    return _coalesce_numpy(src_ids, dst_ids)


_LOOP_MAX_IDS = 256  # below this a Python loop beats numpy's per-call overhead


def _coalesce_loop(src_ids: list[int], dst_ids: list[int]) -> list[Run]:
    if len(set(dst_ids)) != len(dst_ids):
        raise ValueError("a destination block appears twice in the transfer")
    pairs = sorted(zip(src_ids, dst_ids))  # by source, then destination
    if pairs[0][0] < 0 or min(dst_ids) < 0:
        src, dst = next(p for p in zip(src_ids, dst_ids) if min(p) < 0)
        raise ValueError(f"negative block id in pair ({src}, {dst})")
    runs: list[Run] = []
    start_s, start_d = pairs[0]
    prev_s, prev_d = start_s, start_d
    for s, d in pairs[1:]:
        if s != prev_s + 1 or d != prev_d + 1:
            runs.append(Run(start_s, start_d, prev_s - start_s + 1))
            start_s, start_d = s, d
        prev_s, prev_d = s, d
    runs.append(Run(start_s, start_d, prev_s - start_s + 1))
    return runs


def _coalesce_numpy(src_ids: list[int], dst_ids: list[int]) -> list[Run]:
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


def coalesce_runs(src_runs: tuple[tuple[int, int], ...], dst_runs: tuple[tuple[int, int], ...]) -> list[Run]:
    """coalesce_ids() over ids given as (first, count) runs (BlockIds.runs, ids
    >= 0), with the same result and errors, in O(runs): one run on each side
    (the common case) is one Run at once; otherwise the two run lists are cut
    into pieces consecutive on both sides, which are checked (no destination
    twice), sorted by source and merged. Pieces overlapping in the source (a
    block sent twice) or many pieces go through coalesce_ids on the ids."""
    if len(src_runs) == 1 and len(dst_runs) == 1:
        (s, n), (d, m) = src_runs[0], dst_runs[0]
        if n != m:
            raise ValueError(f"{n} source blocks vs {m} destination blocks")
        return [Run(s, d, n)]
    ns, nd = sum(c for _, c in src_runs), sum(c for _, c in dst_runs)
    if ns != nd:
        raise ValueError(f"{ns} source blocks vs {nd} destination blocks")
    if not ns:
        return []
    if len(src_runs) + len(dst_runs) > _LOOP_MAX_IDS:
        return coalesce_ids(_expand(src_runs), _expand(dst_runs))
    pieces: list[tuple[int, int, int]] = []  # (src first, dst first, count)
    it_s, it_d = iter(src_runs), iter(dst_runs)
    s, sn, d, dn = 0, 0, 0, 0
    for _ in range(len(src_runs) + len(dst_runs)):
        if not sn:
            s, sn = next(it_s, (0, 0))
        if not dn:
            d, dn = next(it_d, (0, 0))
        if not sn or not dn:
            break
        n = min(sn, dn)
        pieces.append((s, d, n))
        s, sn, d, dn = s + n, sn - n, d + n, dn - n
    by_dst = sorted((d, n) for _, d, n in pieces)
    if any(b[0] < a[0] + a[1] for a, b in zip(by_dst, by_dst[1:])):
        raise ValueError("a destination block appears twice in the transfer")
    pieces.sort()  # by source, then destination
    if any(b[0] < a[0] + a[2] for a, b in zip(pieces, pieces[1:])):
        return coalesce_ids(_expand(src_runs), _expand(dst_runs))  # per-pair order differs inside overlaps
    runs: list[Run] = []
    s0, d0, n0 = pieces[0]
    for s, d, n in pieces[1:]:
        if s == s0 + n0 and d == d0 + n0:
            n0 += n
        else:
            runs.append(Run(s0, d0, n0))
            s0, d0, n0 = s, d, n
    runs.append(Run(s0, d0, n0))
    return runs


def _expand(runs: tuple[tuple[int, int], ...]) -> list[int]:
    return [b for f, c in runs for b in range(f, f + c)]


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
