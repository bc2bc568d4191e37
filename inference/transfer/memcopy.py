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
not chosen is retried now and then (_Chooser, one per size class), so a
core freed again is noticed within a fraction of a second.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import queue
import threading
import time

import torch

from inference.transfer.source import copy_addresses

SHARE_MIN_BYTES = 8 << 20  # A/B in the send path: shared 4 MiB 635 us vs 609 alone; 16 MiB 1.75 ms vs 2.24
PIECES_PER_THREAD = 2  # evens out a late helper; few pieces keep GIL hand-offs between the threads rare
MIN_PIECE_BYTES, MAX_PIECE_BYTES = 256 << 10, 8 << 20
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)  # macOS has no affinity
HELPERS = max(0, min(7, _CORES - 1))


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
# The way not chosen is measured again after this long, doubling while it loses. The team is
# retried soon: on a quiet machine it copies 4 MiB in ~0.33 ms against ~0.5 ms for the caller,
# and another process's load comes and goes within seconds; a retry of a stalled team costs one
# stalled copy (the retry ends there). A retry of the caller costs ~0.2 ms a copy: rarely.
RETRY_S = {"team": 0.25, "caller": 1.0}
MAX_RETRY_S = {"team": 2.0, "caller": 16.0}
WINDOW = 5  # a way's rate is the median of its last WINDOW copies: two stalls in five do not move it
PROBE = 3  # a retry is this many copies in a row, judged on their median alone
GIVE_UP_RATIO = 4.0  # a retry copy this many times slower than the chosen way ends the retry (a stall: ~8 ms for 4 MiB)


def _median(samples: list[float]) -> float:
    return sorted(samples)[len(samples) // 2]


class _Chooser:
    """Nanoseconds per byte of the last WINDOW copies of each way, for one
    size class (copy_runs keeps one per power of two: the team's start-up
    weighs on 1 MiB, not on 64); the lower median wins. Races between sender
    threads only mix samples.

    A retry is PROBE copies in a row of the way not chosen, its old samples
    dropped first, so its median says how it copies now; it is decided when
    the retry ends, not on one copy (the first copy of a team that slept pays
    its wake-up). A retry copy GIVE_UP_RATIO times slower than the chosen
    way ends it at once. Outside retries, too, a way is judged only once it
    has PROBE copies in its window, unless a copy is a stall (GIVE_UP_RATIO
    times the other way): the team's first copy after the caller's initial
    probe is a cold start, and alone it used to hand every later copy to the
    caller (~0.59 ms for 4 MiB instead of ~0.33) until a retry came due. A team retry is skipped (not counted as lost) while
    other running tasks fill the cores it needs (team_has_cores). While a way keeps losing, its retries come at
    doubling intervals up to MAX_RETRY_S; a change of winner resets them."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {"team": [], "caller": []}
        self.best = "team"
        self.due_ns = {"team": 0, "caller": 0}  # the way is retried from then on
        self.interval_ns = {w: int(RETRY_S[w] * 1e9) for w in self.due_ns}
        self.probe_way, self.probe_left = "caller", 0

    def pick(self) -> str:
        if self.probe_left:
            return self.probe_way
        other = "caller" if self.best == "team" else "team"
        now = time.monotonic_ns()
        if now >= self.due_ns[other]:
            self.due_ns[other] = now + self.interval_ns[other]
            if other == "team" and not team_has_cores():
                return self.best  # a retry now would only stall; looked at again after the same interval

            self.interval_ns[other] = min(2 * self.interval_ns[other], int(MAX_RETRY_S[other] * 1e9))
            self.probe_way, self.probe_left = other, PROBE
            self.samples[other] = []
            return other
        return self.best

    def record(self, way: str, num_bytes: int, elapsed_ns: int) -> None:
        rate = elapsed_ns / num_bytes
        s = self.samples[way]
        s.append(rate)
        if len(s) > WINDOW:
            del s[0]
        if self.probe_left and way == self.probe_way:
            self.probe_left -= 1
            chosen = self.samples[self.best]
            if chosen and rate > GIVE_UP_RATIO * _median(chosen):
                self.probe_left = 0
            if self.probe_left:
                return  # decided when the retry ends
        team, caller = self.samples["team"], self.samples["caller"]
        if team and caller:
            other = caller if way == "team" else team
            if len(s) < PROBE and rate <= GIVE_UP_RATIO * _median(other):
                return  # too few copies of this way to judge it (the first after idle pays a wake-up); a stall decides at once
            best = "team" if _median(team) <= _median(caller) else "caller"
            if best != self.best:  # the way that lost is retried after the first interval again
                self.interval_ns = {w: int(RETRY_S[w] * 1e9) for w in self.interval_ns}
                self.due_ns[self.best] = time.monotonic_ns() + self.interval_ns[self.best]
                self.best = best


def team_has_cores() -> bool:
    """Whether the cores the team needs besides the caller look free now:
    /proc/loadavg's count of running tasks (this thread included) against
    the cores this process may use. One read (~10 us), made only when a team
    retry is due: a retry while another process holds the core costs a
    stalled copy (~8 ms for 4 MiB), which the count predicts. Unknown: True."""
    try:
        with open("/proc/loadavg", "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return True
    return _CORES - running >= torch.get_num_threads() - 1


_choosers: dict[int, _Chooser] = {}


def chooser_for(num_bytes: int) -> _Chooser:
    """The chooser of num_bytes' size class (powers of two)."""
    key = num_bytes.bit_length()
    c = _choosers.get(key)
    if c is None:
        c = _choosers.setdefault(key, _Chooser())
    return c


def copy_runs(dst: torch.Tensor, src: torch.Tensor, runs: list[tuple[int, int, int]]) -> None:
    """Copy every (src offset, dst offset, bytes) run from the flat uint8 CPU
    tensor `src` into `dst`, the faster way (see the module docstring). Every
    run is checked inside both tensors before the first byte moves (TransferError)."""
    calls = copy_addresses(src, dst, runs, "memcopy")
    total = sum(r[2] for r in runs)
    if total < TEAM_MIN_BYTES or torch.get_num_threads() < 2:
        copy(calls)
        return
    chooser = chooser_for(total)
    way = chooser.pick()
    t0 = time.perf_counter_ns()
    if way == "team":
        for (s, d, n), call in zip(runs, calls):
            if n >= TEAM_RUN_MIN_BYTES:
                dst[d:d + n].copy_(src[s:s + n])
            else:
                _memmove(*call)
    else:
        copy(calls)
    chooser.record(way, total, time.perf_counter_ns() - t0)
