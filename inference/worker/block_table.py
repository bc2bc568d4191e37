"""The host block table of a step, carried over from the previous step.

Rebuilding [num_seqs, width] from every request's block list costs a Python
iteration per block id: ~50k ids a decode step at 512 requests of ~1500
tokens (16-token blocks), ~3 ms on the host, more than the GPU spends on
the step. Between steps a request's list only grows (the block manager
appends), so the table of the previous step holds almost everything: its
rows are gathered in the new batch order with one numpy take, and only ids
appended since (one new block per request every block_size decode steps)
or rows of requests new to the batch are written from the lists.

When a cached row is not trusted: a request that was not in the previous
batch, or whose id the scheduler reports freed (preempted or finished: its
list was emptied or cut) since then, is written whole; so is a row whose
list is now shorter than the cached one, or whose last cached id no longer
matches the list (any mutation other than an append). Entries past a row's
length are 0, as a fresh table's would be.
"""
from __future__ import annotations

import numpy as np


class BlockTable:
    def __init__(self):
        self.table = np.zeros((0, 0), dtype=np.int32)  # previous step's rows, batch order, capacity width
        self.lengths = np.zeros(0, dtype=np.int64)
        self.row_of: dict[str, int] = {}

    def build(self, request_ids: list[str], block_lists: list[list[int]], lengths: np.ndarray,
              freed_ids=()) -> np.ndarray:
        """[len(request_ids), capacity] int32 table (slice [:, :max(lengths)]
        for the batch); lengths[i] = len(block_lists[i])."""
        for request_id in freed_ids:
            self.row_of.pop(request_id, None)
        num = len(request_ids)
        width = max(int(lengths.max()) if num else 0, 1)
        capacity = self.table.shape[1]
        if width > capacity:
            capacity = max(width, 2 * capacity, 16)
        table = np.zeros((num, capacity), dtype=np.int32)
        prev = np.fromiter((self.row_of.get(rid, -1) for rid in request_ids), np.int64, num)
        known = np.nonzero(prev >= 0)[0]
        cached = np.zeros(num, dtype=np.int64)
        if known.size:
            table[known, :self.table.shape[1]] = self.table[prev[known]]
            cached[known] = self.lengths[prev[known]]
            check = known[cached[known] > 0]
            counts = cached[check]
            longer = lengths[check] >= counts  # a shorter list was cut: rewrite its row
            rows, ends = check[longer], counts[longer]
            now = np.fromiter((block_lists[i][k - 1] for i, k in zip(rows.tolist(), ends.tolist())), np.int64, rows.size)
            good = np.zeros(check.size, dtype=bool)
            good[longer] = now == table[rows, ends - 1]  # the last cached id still in place
            stale = check[~good]
            if stale.size:
                table[stale] = 0
                cached[stale] = 0
        for i in np.nonzero(lengths > cached)[0].tolist():
            start = int(cached[i])
            table[i, start:lengths[i]] = block_lists[i][start:]
        self.table, self.lengths = table, lengths.copy()
        self.row_of = dict(zip(request_ids, range(num)))
        return table
