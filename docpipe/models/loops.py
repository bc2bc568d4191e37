"""Repetition-loop detection on a decoded answer (string or token-id list).

A runaway answer ends in the same unit repeated until max_tokens: a
periodic tail. `find_loop` looks for the period p (1..max_period) whose
backward run `seq[i] == seq[i - p]` covers the longest tail; the tail counts
as a loop when it is long enough (min_span elements) and repeats often
enough (min_repeats; long units need fewer, since a 60-character sentence
said three times in a row is already a loop while `<ecel>` eight times is a
normal row of empty table cells). `truncate_loop` keeps everything before
the loop plus one copy of the unit, and flags the answer so the block can be
marked. Works on any sequence, so the engine may run it on token ids to stop
a request early.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_PERIOD = 256  # longest repeated unit looked for (elements)
MIN_SPAN = 200  # a loop covers at least this many elements
MIN_REPEATS_SHORT = 8  # repeats needed for units shorter than LONG_UNIT
MIN_REPEATS_LONG = 3  # repeats needed for units of LONG_UNIT or more
LONG_UNIT = 40  # elements


@dataclass
class Loop:
    start: int  # index where the periodic tail starts
    period: int  # length of the repeated unit, elements
    repeats: float  # tail length / period


@dataclass
class LoopCheck:
    text: str  # the answer, truncated after one copy of the loop unit when is_loop
    is_loop: bool  # a runaway repetition was found and cut
    period: int = 0  # unit length in characters (0 when no loop)
    repeats: float = 0.0  # how many times the unit repeated


def _tail_run(seq: Sequence, period: int) -> int:
    """Number of trailing positions i with seq[i] == seq[i - period]."""
    n, run = len(seq), 0
    while run < n - period and seq[n - 1 - run] == seq[n - 1 - run - period]:
        run += 1
    return run


def find_loop(seq: Sequence, max_period: int = MAX_PERIOD, min_span: int = MIN_SPAN) -> Loop | None:
    best_span, best_p = 0, 0
    n = len(seq)
    last = seq[n - 1] if n else None
    for p in range(1, min(max_period, n // 2) + 1):
        if best_span >= min_span and p % best_p == 0:
            continue  # a multiple of a found period covers no more tail, only costs time
        # most periods fail at the last element: skip the call (answers are checked per block)
        span = (_tail_run(seq, p) if seq[n - 1 - p] == last else 0) + p
        if span > best_span:  # ties keep the smaller period
            best_span, best_p = span, p
    if best_p == 0 or best_span < min_span:
        return None
    repeats = best_span / best_p
    need = MIN_REPEATS_LONG if best_p >= LONG_UNIT else MIN_REPEATS_SHORT
    if repeats < need:
        return None
    return Loop(start=len(seq) - best_span, period=best_p, repeats=repeats)


def truncate_loop(text: str) -> LoopCheck:
    loop = find_loop(text)
    if loop is None:
        return LoopCheck(text, False)
    kept = text[:loop.start + loop.period].rstrip()
    return LoopCheck(kept, True, loop.period, loop.repeats)
