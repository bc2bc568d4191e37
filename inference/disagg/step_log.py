"""StepLog: the durations of a worker's recent engine steps, numbered from 0.

Read as (steps since a step number, the longest of them): a request's span on
a decode worker (KV landed -> finished) gets how many engine steps it waited
through and the longest one, which tells a slow step from many steps.
"""
from __future__ import annotations


class StepLog:
    """The last `size` step durations in a ring."""

    def __init__(self, size: int = 4096):
        self.count = 0
        self._ring = [0.0] * size

    def add(self, seconds: float) -> None:
        self._ring[self.count % len(self._ring)] = seconds
        self.count += 1

    def since(self, start: int) -> tuple[int, float]:
        """(steps since step number `start`, the longest of them in seconds; -1.0 when some of them
        are no longer kept, 0.0 when none ran)."""
        n, size = self.count - start, len(self._ring)
        if n > size:
            return n, -1.0
        if n <= 0:
            return n, 0.0
        a, b = start % size, self.count % size  # slices: C-speed max, not a Python loop per step
        parts = (self._ring[a:b],) if a < b else (self._ring[a:], self._ring[:b])
        return n, max(max(p) for p in parts if p)
