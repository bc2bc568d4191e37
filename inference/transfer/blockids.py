"""Block ids in sequence order, held as runs of consecutive ids.

A request's KV blocks are mostly one fresh allocation (ids a, a+1, ...), so
a 4096-block transfer is one (first, count) run. BlockIds keeps only the
runs, maximal (no run continues the one before it, so equal id sequences
have equal runs), and every per-transfer step works on them: the checks
against the pool, the wire form, the copy plan, the receiver's landing
checks. Their cost grows with the number of runs, not of ids.

Lifecycle: built once per transfer, either from the engine's id list
(from_list: a few C-level passes, type checks included) or off the wire
(from_runs: every run validated); then only read. Many runs (a churned
pool's ids) are found and checked in numpy passes and kept as two int64
arrays; the (first, count) tuples of .runs are built on first read, while
to_wire(), tolist(), len() and max_id come from the arrays. Whatever the
numpy path doubts (a bad run, ids past int64) goes through the loop, which
raises the exact error. A plain list of ids is
built on demand, once (tolist() caches it), for the APIs that need one.
Malformed input raises BlockIdsError, both a TransferError and a ValueError
(callers that catch either keep working).
"""
from __future__ import annotations

from itertools import chain

import numpy as np

from inference.transfer.errors import TransferError

MAX_IDS = 1 << 22  # more block ids than any pool holds: a bad frame, refused before anything is built
_LOOP_MAX_IDS = 256  # below this a Python loop beats numpy's per-call overhead
_LOOP_MAX_RUNS = 32  # the same for wire runs
_INT = {int}


class BlockIdsError(TransferError, ValueError):
    """Block ids (a list or wire runs) that are malformed or out of bounds."""


class BlockIds:
    """An immutable sequence of non-negative block ids, stored as runs."""

    __slots__ = ("_runs", "_firsts", "_counts", "_len", "_max", "_list")

    def __init__(self, runs: tuple[tuple[int, int], ...] = ()):
        """runs: maximal, validated (first >= 0, count >= 1) runs; use the from_* constructors."""
        self._runs, self._firsts, self._counts, self._list = runs, None, None, None
        self._len = sum(c for _, c in runs)
        self._max = max(f + c for f, c in runs) - 1 if runs else -1

    @classmethod
    def _one_run(cls, first: int, count: int) -> "BlockIds":
        """One validated run (count >= 1), without __init__'s generator passes: the per-transfer case."""
        self = cls.__new__(cls)
        self._runs, self._firsts, self._counts, self._list = ((first, count),), None, None, None
        self._len, self._max = count, first + count - 1
        return self

    @classmethod
    def _arrays(cls, firsts: np.ndarray, counts: np.ndarray, length: int, max_id: int) -> "BlockIds":
        """Maximal validated runs as two int64 arrays (many runs): the tuple
        pairs are built only if someone reads .runs; the wire form and the id
        list come from the arrays directly."""
        self = cls.__new__(cls)
        self._runs, self._firsts, self._counts, self._list = None, firsts, counts, None
        self._len, self._max = length, max_id
        return self

    @property
    def runs(self) -> tuple[tuple[int, int], ...]:
        """The (first, count) pairs, in sequence order."""
        if self._runs is None:  # one assignment: a racing reader builds an equal tuple
            self._runs = tuple(zip(self._firsts.tolist(), self._counts.tolist()))
        return self._runs

    # constructors ---------------------------------------------------------
    @classmethod
    def range(cls, first: int, count: int) -> "BlockIds":
        if type(first) is not int or type(count) is not int or first < 0 or count < 0:
            raise BlockIdsError(f"a block id range needs ints first >= 0 and count >= 0, got ({first!r}, {count!r})")
        return cls._one_run(first, count) if count else EMPTY

    @classmethod
    def from_list(cls, ids: object, name: str = "block ids") -> "BlockIds":
        """ids in sequence order (a list of ints, or a range of step 1)."""
        if type(ids) is range and ids.step == 1:
            return cls.range(ids.start, len(ids)) if ids.start >= 0 else _bad_list(name)
        if not isinstance(ids, list):
            _bad_list(name)
        n = len(ids)
        if not n:
            return EMPTY
        first = ids[0]
        if (type(first) is int and first >= 0 and ids[-1] == first + n - 1 and ids == _iota(first, n)
                and (n == 1 or type(ids[1]) is int) and type(sum(ids)) is int):
            # the common case in two C-level passes. The compare lets through only values equal
            # to the expected ints; a bool among them could only be 0 or 1, so at index 0 or 1
            # (checked); a float, numpy int, Decimal... anywhere makes the sum's type not int
            return cls._one_run(first, n)
        if not set(map(type, ids)) <= _INT:  # bool and float compare equal to ints: types first
            _bad_list(name)
        if n > _LOOP_MAX_IDS and (got := _from_ids_numpy(ids)) is not None:
            out, lowest = got
            return out if lowest >= 0 else _bad_list(name)
        out = cls(_runs_loop(ids))
        if min(f for f, _ in out.runs) < 0:
            _bad_list(name)
        return out  # the caller's list is not kept: the caller may still change it

    @classmethod
    def one_run_from_wire(cls, runs: object) -> "BlockIds | None":
        """The wire form of one valid run ([[first, count]]) as BlockIds; None for anything else
        (from_runs then decides): the common case, without from_runs' generic checks."""
        if type(runs) is list and len(runs) == 1:
            r = runs[0]
            if type(r) is list and len(r) == 2:
                first, count = r
                if type(first) is int and type(count) is int and first >= 0 and 1 <= count <= MAX_IDS:
                    return cls._one_run(first, count)
        return None

    @classmethod
    def from_runs(cls, runs: object, name: str = "block ids") -> "BlockIds":
        """The wire form, [[first, count], ...], checked run by run."""
        if type(runs) is not list:
            raise BlockIdsError(f"{name} must be a list of [first, count] runs")
        if len(runs) > MAX_IDS:
            raise BlockIdsError(f"{name}: {len(runs)} runs name more than {MAX_IDS} blocks")
        if len(runs) == 1 and (one := cls.one_run_from_wire(runs)) is not None:  # the per-transfer case: one fresh allocation
            return one
        if len(runs) > _LOOP_MAX_RUNS and (out := _from_runs_numpy(runs)) is not None:
            return out
        # few runs, or something is wrong: the loop names the first bad run
        out: list[tuple[int, int]] = []
        total = 0
        for r in runs:
            if type(r) is not list or len(r) != 2 or type(r[0]) is not int or type(r[1]) is not int:
                raise BlockIdsError(f"{name}: run {_short(r)} is not a [first, count] pair of ints")
            first, count = r
            if first < 0:
                raise BlockIdsError(f"{name}: run [{first}, {count}]: block ids must be non-negative")
            if count < 1:
                raise BlockIdsError(f"{name}: block id run [{first}, {count}] is empty")
            total += count
            if total > MAX_IDS:
                raise BlockIdsError(f"{name}: transfer meta names more than {MAX_IDS} blocks")
            if out and out[-1][0] + out[-1][1] == first:  # canonical: a run that continues the last one joins it
                out[-1] = (out[-1][0], out[-1][1] + count)
            else:
                out.append((first, count))
        return cls(tuple(out))

    # reading ----------------------------------------------------------------
    def __len__(self) -> int:
        return self._len

    @property
    def max_id(self) -> int:
        """The largest id (-1 when empty)."""
        return self._max

    @property
    def num_runs(self) -> int:
        return len(self._runs) if self._runs is not None else len(self._firsts)

    def head(self, n: int) -> "BlockIds":
        """The first n ids (0 <= n <= len), cut from the runs without listing the ids."""
        if not 0 <= n <= self._len:
            raise BlockIdsError(f"cannot take the first {n} of {self._len} block ids")
        if n == self._len:
            return self
        runs, left = [], n
        for first, count in self.runs:
            if left <= 0:
                break
            runs.append((first, min(count, left)))
            left -= count
        return BlockIds(tuple(runs)) if runs else EMPTY

    def to_wire(self) -> list[list[int]]:
        if self._runs is None:
            return np.stack((self._firsts, self._counts), axis=1).tolist()
        return [[f, c] for f, c in self._runs]

    def tolist(self) -> list[int]:
        """The ids as a list, built once; callers must not mutate it."""
        if self._list is None:
            if self._runs is None:  # id i of run r is firsts[r] + (i - start of r)
                starts = np.cumsum(self._counts) - self._counts
                self._list = (np.arange(self._len, dtype=np.int64) + np.repeat(self._firsts - starts, self._counts)).tolist()
            elif len(self.runs) == 1:
                f, c = self.runs[0]
                self._list = list(range(f, f + c))
            else:
                self._list = [b for f, c in self.runs for b in range(f, f + c)]
        return self._list

    def first_at_least(self, limit: int, k: int) -> list[int]:
        """The first k ids (in sequence order) that are >= limit: for error messages."""
        out: list[int] = []
        for f, c in self.runs:
            lo = max(f, limit)
            if lo < f + c:
                out.extend(range(lo, min(f + c, lo + k - len(out))))
                if len(out) >= k:
                    break
        return out

    def __iter__(self):
        for f, c in self.runs:
            yield from range(f, f + c)

    def __getitem__(self, i):
        return self.tolist()[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BlockIds):
            return self.runs == other.runs
        if isinstance(other, (list, tuple, range)):
            return len(other) == self._len and self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # equal to lists, which do not hash

    def __repr__(self) -> str:
        return f"BlockIds({self.to_wire()})"

    def __reduce__(self):  # pickles as its runs (multiprocessing queues, pipes)
        return (BlockIds, (self.runs,))


EMPTY = BlockIds()


_IOTA_MAX = 1 << 17  # ids below this are compared against slices of one cached list (~5 MB at most)
_iota_list: list[int] = []


def _iota(first: int, n: int) -> list[int]:
    """list(range(first, first + n)); a slice of a cached list (a pointer copy)
    costs a tenth of building the ints anew, on every transfer."""
    global _iota_list
    end = first + n
    if end > len(_iota_list):
        if end > _IOTA_MAX:
            return list(range(first, end))
        _iota_list = list(range(min(_IOTA_MAX, max(end, 2 * len(_iota_list), 4096))))  # one assignment: readers see old or new
    return _iota_list[first:end]


def _bad_list(name: str):
    raise BlockIdsError(f"{name} must be a list of non-negative ints")


def _short(obj: object) -> str:
    text = repr(obj)
    return text if len(text) <= 40 else text[:37] + "..."


def _runs_loop(ids: list[int]) -> tuple[tuple[int, int], ...]:
    runs: list[tuple[int, int]] = []
    start = prev = ids[0]
    for b in ids[1:]:
        if b != prev + 1:
            runs.append((start, prev - start + 1))
            start = b
        prev = b
    runs.append((start, prev - start + 1))
    return tuple(runs)


def _from_ids_numpy(ids: list[int]) -> tuple[BlockIds, int] | None:
    """(BlockIds, smallest id) of a long list of ints, in a few numpy passes;
    None when an id does not fit int64 (the loop keeps such ids exact)."""
    try:
        a = np.array(ids, dtype=np.int64)
    except OverflowError:
        return None
    starts = np.flatnonzero(a[1:] - a[:-1] != 1) + 1  # a wrapped difference can only join ids that include a negative one
    starts = np.concatenate((np.zeros(1, np.int64), starts))
    counts = np.diff(np.append(starts, len(a)))
    return BlockIds._arrays(a[starts], counts, len(a), int(a.max())), int(a.min())


_LIST = {list}
_FIRST_MAX = 1 << 62  # first + count cannot overflow int64 below this; larger ids take the loop


def _from_runs_numpy(runs: list) -> BlockIds | None:
    """Wire runs checked and joined in numpy passes; None when any run is
    malformed or out of bounds, so that the loop raises its exact error."""
    if not set(map(type, runs)) <= _LIST or set(map(len, runs)) != {2}:
        return None
    flat = list(chain.from_iterable(runs))
    if not set(map(type, flat)) <= _INT:
        return None
    try:
        a = np.array(flat, dtype=np.int64).reshape(-1, 2)
    except OverflowError:
        return None
    f, c = a[:, 0], a[:, 1]
    if f.min() < 0 or f.max() > _FIRST_MAX or c.min() < 1 or c.max() > MAX_IDS:
        return None
    total = int(c.sum())  # at most MAX_IDS runs of at most MAX_IDS each: no overflow
    if total > MAX_IDS:
        return None
    ends = f + c
    keep = np.flatnonzero(np.concatenate(([True], f[1:] != ends[:-1])))  # canonical: a run that continues the last one joins it
    firsts, counts = f[keep], np.add.reduceat(c, keep)
    return BlockIds._arrays(firsts, counts, total, int((firsts + counts).max()) - 1)
