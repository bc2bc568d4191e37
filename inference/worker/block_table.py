"""The host block table of a step, carried over from the previous step.

Rebuilding [num_seqs, width] from every request's block list costs a Python
iteration per block id: ~50k ids a decode step at 512 requests of ~1500
tokens (16-token blocks), ~3 ms on the host, more than the GPU spends on
the step. Between steps a request's list only grows (the block manager
appends), so the table of the previous step holds almost everything: its
rows are gathered in the new batch order with one numpy take, and only ids
appended since (one new block per request every block_size decode steps)
or rows of requests new to the batch are written from the lists.

Contract: a row is carried only for a request of the previous build whose
list has only been appended to since. Any other change (preempted and
re-admitted, finished with its list cut, emptied) must be reported by id,
through build(freed_ids=...) or forget(), before the next build, including
when the step that freed it built no batch. As a second line of defence
a carried row is also rewritten whole when the list is now shorter, or its
first or last cached id no longer matches the list; these checks cost one
lookup per row, not per block, so a change that keeps both ends in place
(a middle id swapped) is caught only by the report. Entries past a row's
length are 0, as a fresh table's would be.
"""
from __future__ import annotations

from itertools import repeat
from operator import getitem, itemgetter

import numpy as np


class BlockTable:
    def __init__(self):
        self.table = np.zeros((0, 0), dtype=np.int32)  # previous build's rows, batch order, capacity width
        self.lengths = np.zeros(0, dtype=np.int64)  # previous build's block counts, same order
        self.row_of: dict[str, int] = {}  # request id -> its row in self.table
        self.request_ids: list[str] = []  # the ids of row_of, in row order

    def forget(self, request_ids) -> None:
        """These requests' lists may have changed other than by appends
        (preempted, finished): their next row is written whole."""
        for request_id in request_ids:
            if self.row_of.pop(request_id, None) is not None:
                self.request_ids = []  # row_of no longer matches them: rebuilt at the next build

    def build(self, request_ids: list[str], block_lists: list[list[int]], lengths: np.ndarray,
              freed_ids=()) -> np.ndarray:
        """[len(request_ids), capacity] int32 table whose row i holds
        block_lists[i] then zeros (slice [:, :max(lengths)] for the batch);
        lengths[i] = len(block_lists[i]). freed_ids: as forget(), first."""
        self.forget(freed_ids)
        num = len(request_ids)
        width = max(int(lengths.max()) if num else 0, 1)
        capacity = max(16, 1 << (width - 1).bit_length())  # follows the batch: one long request ends, it shrinks
        table = np.zeros((num, capacity), dtype=np.int32)
        prev = np.fromiter(map(self.row_of.get, request_ids, repeat(-1)), np.int64, num)
        known = np.nonzero(prev >= 0)[0]
        cached = np.zeros(num, dtype=np.int64)
        if known.size:
            keep = min(self.table.shape[1], capacity)  # a row longer than that was cut: _drop_changed rewrites it
            table[known, :keep] = self.table[prev[known], :keep]
            cached[known] = self.lengths[prev[known]]
            self._drop_changed(table, cached, known, block_lists, lengths)
        self._append(table, cached, block_lists, lengths)
        self.table, self.lengths = table, lengths.copy()
        if request_ids != self.request_ids:  # most decode steps keep the batch: no new dict
            self.row_of = dict(zip(request_ids, range(num)))
            self.request_ids = list(request_ids)
        return table

    @staticmethod
    def _append(table: np.ndarray, cached: np.ndarray, block_lists, lengths: np.ndarray) -> None:
        """Write each row's ids from its cached count on: a few rows a decode step (1 in 16 with 16-token
        blocks), where a row write (~1 us) beats a vectorised scatter's fixed ~8 numpy calls."""
        rows = np.nonzero(lengths > cached)[0]
        for i, start, end in zip(rows.tolist(), cached[rows].tolist(), lengths[rows].tolist()):
            table[i, start:end] = block_lists[i][start:]

    @staticmethod
    def _drop_changed(table: np.ndarray, cached: np.ndarray, known: np.ndarray, block_lists, lengths) -> None:
        """Zero the carried rows (and their cached counts) whose list is now
        shorter or whose first or last cached id moved."""
        check = known[cached[known] > 0]
        counts = cached[check]
        longer = lengths[check] >= counts
        rows, ends = check[longer], counts[longer]
        lists = _pick(block_lists, rows)
        last = np.fromiter(map(getitem, lists, (ends - 1).tolist()), np.int64, rows.size)
        first = np.fromiter(map(_first, lists), np.int64, rows.size)
        good = np.zeros(check.size, dtype=bool)
        good[longer] = (first == table[rows, 0]) & (last == table[rows, ends - 1])
        stale = check[~good]
        if stale.size:
            table[stale] = 0
            cached[stale] = 0


_first = itemgetter(0)


def _pick(block_lists: list, rows: np.ndarray) -> list:
    """block_lists[i] for i in rows (sorted, distinct): the list itself when rows are all of it."""
    return block_lists if rows.size == len(block_lists) else list(map(block_lists.__getitem__, rows.tolist()))
