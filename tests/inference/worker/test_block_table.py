"""The carried-over block table against a table built from scratch, over
random step sequences: appends (decode, prefill chunks), requests joining
and leaving, reordering, lists emptied and regrown (preemption) with and
without the scheduler reporting the id freed, and cut lists (finish)."""
from __future__ import annotations

import random

import numpy as np

from inference.worker.block_table import BlockTable


def _fresh(block_lists: list[list[int]]) -> np.ndarray:
    width = max([len(b) for b in block_lists] + [1])
    table = np.zeros((len(block_lists), width), dtype=np.int32)
    for i, blocks in enumerate(block_lists):
        table[i, :len(blocks)] = blocks
    return table


def _step(bt: BlockTable, batch: list[str], lists: dict[str, list[int]], freed=()) -> None:
    block_lists = [lists[rid] for rid in batch]
    lengths = np.array([len(b) for b in block_lists], dtype=np.int64)
    got = bt.build(batch, block_lists, lengths, freed)
    want = _fresh(block_lists)
    width = want.shape[1]
    assert got.shape[0] == len(batch) and got.shape[1] >= width
    assert np.array_equal(got[:, :width], want)
    assert not got[:, width:].any()


def test_matches_a_fresh_table_over_random_steps():
    rng = random.Random(0)
    next_block = [1]

    def new_blocks(n: int) -> list[int]:
        out = list(range(next_block[0], next_block[0] + n))
        next_block[0] += n
        return out

    lists: dict[str, list[int]] = {}
    running: list[str] = []
    bt = BlockTable()
    for step in range(400):
        freed = []
        for rid in list(running):
            r = rng.random()
            if r < 0.04:  # finished: leaves, its list cut (kept KV) or emptied
                running.remove(rid)
                if rng.random() < 0.5:
                    del lists[rid][rng.randrange(len(lists[rid]) + 1):]
                else:
                    lists[rid].clear()
                freed.append(rid)
            elif r < 0.07:  # preempted and re-admitted later with other blocks, freed reported
                lists[rid].clear()
                freed.append(rid)
                lists[rid].extend(new_blocks(rng.randint(1, 5)))
            elif r < 0.09:  # emptied and regrown between two steps without a report: the id check catches it
                n = len(lists[rid])
                lists[rid].clear()
                lists[rid].extend(new_blocks(n + rng.randint(0, 2)))
            elif r < 0.5:
                lists[rid].extend(new_blocks(rng.choice([1, 1, 1, 3])))
        while len(running) < 12 and rng.random() < 0.6:
            rid = f"r{step}-{len(running)}"
            lists[rid] = new_blocks(rng.randint(0, 6))
            running.append(rid)
        if rng.random() < 0.1:
            rng.shuffle(running)
        batch = [rid for rid in running if rng.random() < 0.9]  # some skip a step (pending token)
        _step(bt, batch, lists, freed)


def test_grows_width_and_handles_an_empty_batch():
    bt = BlockTable()
    lists = {"a": [5], "b": []}
    _step(bt, ["a", "b"], lists)
    lists["a"].extend(range(100, 140))
    _step(bt, ["b", "a"], lists)
    _step(bt, [], lists)
    _step(bt, ["a"], lists)


def test_width_shrinks_when_the_long_request_leaves():
    bt = BlockTable()
    lists = {"long": list(range(1, 70)), "b": [200, 201], "c": list(range(300, 340))}
    _step(bt, ["long", "b", "c"], lists)
    assert bt.table.shape[1] == 128
    lists["b"].append(202)
    _step(bt, ["b", "c"], lists)  # the long one left: 40 blocks fit 64 columns
    assert bt.table.shape[1] == 64
    del lists["c"][5:]  # cut without a report: shorter than its cached row, rewritten
    lists["c"].extend([900, 901])
    _step(bt, ["c", "b"], lists)
    assert bt.table.shape[1] == 16


def test_forget_drops_a_carried_row_whatever_its_ends():
    bt = BlockTable()
    lists = {"a": [1, 2, 3]}
    _step(bt, ["a"], lists)
    lists["a"] = [1, 7, 3]  # both ends in place: only the report can tell
    bt.forget(["a"])
    _step(bt, ["a"], lists)


def test_readmitted_on_recycled_blocks_without_a_report():
    """A preemption in a step that schedules nothing builds no batch, so its
    report could miss the table (the runner forwards it with forget(); this is
    the second line of defence). The victim comes back on recycled blocks
    whose last id happens to match the carried row's: the first id does not."""
    bt = BlockTable()
    lists = {"v": [0, 1, 2], "w": [3, 4, 5, 6, 7, 8]}
    _step(bt, ["v", "w"], lists)
    lists["v"][:] = [9, 10, 2]
    _step(bt, ["v", "w"], lists)
