"""Block manager: all-or-nothing growth, ref counts, free-list invariants."""
import random

import pytest

from inference.engine.block_manager import BlockManager


def test_allocate_grows_all_or_nothing():
    bm = BlockManager(num_blocks=5, block_size=4)
    a, b = [], []
    assert bm.allocate(a, 9) and len(a) == 3          # ceil(9 / 4)
    assert bm.allocate(a, 12) and len(a) == 3         # still fits
    assert not bm.allocate(b, 13) and b == []         # needs 4, only 2 free: nothing taken
    assert bm.num_free_blocks == 2
    bm.free(a)
    assert a == [] and bm.num_free_blocks == 5
    bm.check_invariants()


def test_ref_counts_keep_shared_blocks_alive():
    bm = BlockManager(num_blocks=4, block_size=2)
    a = []
    bm.allocate(a, 4)
    shared = list(a)
    bm.incref(shared)                  # e.g. a transfer lease
    bm.free(a)
    assert bm.num_free_blocks == 2     # still referenced
    first = shared[0]
    bm.free(shared)
    assert bm.num_free_blocks == 4
    with pytest.raises(AssertionError):
        bm.free([first])               # double free
    bm.check_invariants()


def test_random_workload_keeps_invariants():
    rng = random.Random(0)
    bm = BlockManager(num_blocks=32, block_size=4)
    live: list[list[int]] = []
    for _ in range(500):
        if live and rng.random() < 0.4:
            bm.free(live.pop(rng.randrange(len(live))))
        else:
            blocks = []
            if bm.allocate(blocks, rng.randint(1, 40)):
                live.append(blocks)
        bm.check_invariants()
        held = [b for blocks in live for b in blocks]
        assert len(held) == len(set(held)) and len(held) + bm.num_free_blocks == 32
