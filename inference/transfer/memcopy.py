"""Host memory copies that use a free core when there is one (used by shm).

copy(copies) moves [(dst address, src address, bytes), ...] with libc
memmove (the GIL is released during each call); start(copies) then
finish(job) lets the caller do other work while helpers have begun. Small
jobs run on the calling thread. Larger ones are cut into pieces (half of
a thread's share, 256 KiB to 8 MiB) that the caller and helper threads take
from one shared counter: when the other core is idle a helper takes about
half (one core alone cannot draw the memory bandwidth); when another process
holds it, the caller simply takes them all. A static split, as torch's OpenMP
copy_ makes, waits for the slowest thread instead: measured on 2 shared
cores, 7 GB/s for a fixed two-way split against 11 GB/s on one thread. The
caller only ever waits for a piece a helper already started.

copy_runs(dst, src, runs) copies between two flat uint8 tensors and picks,
per transfer of at least TEAM_MIN_BYTES, the faster of two ways by what the
last few copies of each measured: "team" (torch copy_ per run: its OpenMP
team, whose threads stay spinning between back-to-back copies, so the other
core starts at once; measured here 4 MiB in 0.36-0.44 ms against 0.54-0.59
ms on one thread) and "caller" (copy() above). The team splits statically,
so while another process holds a core its copy waits a scheduler slice
(measured 8 ms for 4 MiB); then its rate drops and the caller wins. The way
not chosen is retried now and then (_Chooser), so a core freed again is
noticed.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import queue
import threading
import time

import torch

SHARE_MIN_BYTES = 8 << 20  # A/B in the send path: shared 4 MiB 635 us vs 609 alone; 16 MiB 1.75 ms vs 2.24
PIECES_PER_THREAD = 2  # evens out a late helper; few pieces keep GIL hand-offs between the threads rare
MIN_PIECE_BYTES, MAX_PIECE_BYTES = 256 << 10, 8 << 20
HELPERS = max(0, min(7, len(os.sched_getaffinity(0)) - 1))


def _non_temporal_bytes() -> int | None:
    """Where glibc's memmove switches to non-temporal stores: 3/4 of the L3
    size it reads (glibc 2.36 rule; 192 MiB here). One call that large beats
    two threads of ordinary stores (13.5 vs 12 GB/s at 256 MiB), so such runs
    are never cut."""
    try:
        libc = ctypes.CDLL(None)
        libc.sysconf.restype = ctypes.c_long
        l3 = libc.sysconf(194)  # _SC_LEVEL3_CACHE_SIZE
    except (OSError, AttributeError):
        return None
    return l3 * 3 // 4 if l3 > 0 else None


WHOLE_RUN_BYTES = _non_temporal_bytes()

_memmove = ctypes.memmove
_jobs: queue.SimpleQueue | None = None
_start_lock = threading.Lock()


class _Job:
    def __init__(self, pieces: list[tuple[int, int, int]]):
        self.pieces = pieces
        self.next = itertools.count()  # next() is atomic under the GIL: each piece is taken once
        self.finished = itertools.count(1)
        self.done = threading.Lock()  # held until the last piece is copied
        if pieces:
            self.done.acquire()

    def work(self) -> None:
        pieces, n = self.pieces, len(self.pieces)
        while (i := next(self.next)) < n:
            _memmove(*pieces[i])
            if next(self.finished) == n:
                self.done.release()


def _helper(jobs: queue.SimpleQueue) -> None:
    while True:
        jobs.get().work()


def _helpers() -> queue.SimpleQueue:
    global _jobs
    with _start_lock:
        if _jobs is None:
            _jobs = queue.SimpleQueue()
            for i in range(HELPERS):
                threading.Thread(target=_helper, args=(_jobs,), name=f"memcopy-{i}", daemon=True).start()
    return _jobs


def start(copies: list[tuple[int, int, int]]) -> _Job:
    """Begin memmoving every (dst, src, bytes): helpers start on a large job
    at once; the caller may do other work, then must call finish(job)."""
    total = sum(c[2] for c in copies)
    if total < SHARE_MIN_BYTES or HELPERS == 0:
        return _Job(copies)  # the caller copies it all in finish()
    piece = min(MAX_PIECE_BYTES, max(MIN_PIECE_BYTES, total // (PIECES_PER_THREAD * (HELPERS + 1))))
    pieces = []
    for d, s, n in copies:
        step = n if WHOLE_RUN_BYTES and n >= WHOLE_RUN_BYTES else piece
        pieces += [(d + o, s + o, min(step, n - o)) for o in range(0, n, step)]
    job = _Job(pieces)
    jobs = _helpers()
    for _ in range(HELPERS):
        jobs.put(job)
    return job


def finish(job: _Job) -> None:
    """Copy the pieces nobody took yet; return when every byte is copied."""
    job.work()
    job.done.acquire()  # a helper may still be inside its last piece


def copy(copies: list[tuple[int, int, int]]) -> None:
    if HELPERS == 0 or sum(c[2] for c in copies) < SHARE_MIN_BYTES:
        for d, s, n in copies:  # the caller copies it all: no job, counters or latch per transfer
            _memmove(d, s, n)
        return
    finish(start(copies))


TEAM_MIN_BYTES = 1 << 20  # below, the team's start-up is not paid back
TEAM_RUN_MIN_BYTES = 256 << 10  # smaller runs of a team transfer are memmoved by the caller
RETRY_S, MAX_RETRY_S = 1.0, 16.0  # the way not chosen is measured again after this long, doubling while it loses
WINDOW = 3  # a way's rate is the median of its last WINDOW copies
GIVE_UP_RATIO = 2.0  # a retry copy this many times slower than the chosen way ends the retry at once


def _median(samples: list[float]) -> float:
    return sorted(samples)[len(samples) // 2]


class _Chooser:
    """Nanoseconds per byte of the last WINDOW copies of each way; the lower
    median wins. State is shared by every sender of this process (they share
    the cores); races between threads only mix samples.

    A retry is WINDOW copies in a row (the first copy of a team that slept
    pays its wake-up: one sample must not decide), cut short when a copy is
    far slower (a stalled team costs one scheduler slice, not three). While a
    way keeps losing its retries come at doubling intervals up to
    MAX_RETRY_S; a change of the winner resets them."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {"team": [], "caller": []}
        self.best = "team"
        self.due_ns = {"team": 0, "caller": 0}  # the way is retried from then on
        self.interval_ns = dict.fromkeys(self.due_ns, int(RETRY_S * 1e9))
        self.probe_way, self.probe_left = "caller", 0

    def pick(self) -> str:
        if self.probe_left:
            self.probe_left -= 1
            return self.probe_way
        other = "caller" if self.best == "team" else "team"
        now = time.monotonic_ns()
        if now >= self.due_ns[other]:
            self.due_ns[other] = now + self.interval_ns[other]
            self.interval_ns[other] = min(2 * self.interval_ns[other], int(MAX_RETRY_S * 1e9))
            self.probe_way, self.probe_left = other, WINDOW - 1
            return other
        return self.best

    def record(self, way: str, num_bytes: int, elapsed_ns: int) -> None:
        rate = elapsed_ns / num_bytes
        s = self.samples[way]
        s.append(rate)
        if len(s) > WINDOW:
            del s[0]
        chosen = self.samples[self.best]
        if way != self.best and self.probe_left and chosen and rate > GIVE_UP_RATIO * _median(chosen):
            self.probe_left = 0
        team, caller = self.samples["team"], self.samples["caller"]
        if team and caller:
            best = "team" if _median(team) <= _median(caller) else "caller"
            if best != self.best:  # the way that lost is retried after the first interval again
                self.interval_ns = dict.fromkeys(self.interval_ns, int(RETRY_S * 1e9))
                self.due_ns[self.best] = time.monotonic_ns() + self.interval_ns[self.best]
                self.best = best


_chooser = _Chooser()


def copy_runs(dst: torch.Tensor, src: torch.Tensor, runs: list[tuple[int, int, int]]) -> None:
    """Copy every (src offset, dst offset, bytes) run from the flat uint8 CPU
    tensor `src` into `dst`, the faster way (see the module docstring)."""
    total = sum(r[2] for r in runs)
    sp, dp = src.data_ptr(), dst.data_ptr()
    if total < TEAM_MIN_BYTES or torch.get_num_threads() < 2:
        copy([(dp + d, sp + s, n) for s, d, n in runs])
        return
    way = _chooser.pick()
    t0 = time.perf_counter_ns()
    if way == "team":
        for s, d, n in runs:
            if n >= TEAM_RUN_MIN_BYTES:
                dst[d:d + n].copy_(src[s:s + n])
            else:
                _memmove(dp + d, sp + s, n)
    else:
        copy([(dp + d, sp + s, n) for s, d, n in runs])
    _chooser.record(way, total, time.perf_counter_ns() - t0)
