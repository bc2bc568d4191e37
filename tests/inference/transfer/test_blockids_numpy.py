"""The numpy paths of BlockIds (long id lists, many wire runs) against the
Python loops they stand in for: the same runs, length, largest id, wire form
and id list, and malformed input refused with the loop's own error (the
numpy path hands anything it doubts to the loop)."""
import random

import pytest

from inference.transfer import blockids
from inference.transfer.blockids import MAX_IDS, BlockIds, BlockIdsError


def _by_loop(monkeypatch, fn, *args):
    with monkeypatch.context() as m:
        m.setattr(blockids, "_LOOP_MAX_IDS", 1 << 40)
        m.setattr(blockids, "_LOOP_MAX_RUNS", 1 << 40)
        return fn(*args)


def _id_lists(seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    single = rng.sample(range(20_000), 4096)  # every id its own run
    churned = [b for s in range(0, 60_000, 15) for b in range(s, s + rng.randint(1, 9))][:4096]
    two = list(range(500, 900)) + list(range(0, 300))
    dup = [rng.randrange(40) for _ in range(1000)]  # repeats and descending steps
    huge = [2**63 - 1 - i for i in range(300)]  # int64's edge, descending
    return [single, churned, two, dup, huge]


@pytest.mark.parametrize("seed", range(3))
def test_long_lists_give_what_the_loop_gives(seed, monkeypatch):
    for ids in _id_lists(seed):
        fast, ref = BlockIds.from_list(ids), _by_loop(monkeypatch, BlockIds.from_list, ids)
        assert fast.runs == ref.runs and len(fast) == len(ref) == len(ids) and fast.max_id == ref.max_id == max(ids)
        assert fast.to_wire() == ref.to_wire() and fast.tolist() == ids and fast == ref and fast.num_runs == ref.num_runs
        wired = BlockIds.from_runs(fast.to_wire())
        assert wired.runs == ref.runs and wired.tolist() == ids and wired.max_id == max(ids)


@pytest.mark.parametrize("bad_at", [0, 150, 299])
@pytest.mark.parametrize("bad", [-1, True, 1.0, -(2**63), -(2**64)])
def test_long_lists_with_a_bad_id_are_refused(bad_at, bad):
    ids = list(range(1000, 1300))
    ids[bad_at] = bad
    with pytest.raises(BlockIdsError, match="non-negative ints"):
        BlockIds.from_list(ids)


def test_ids_beyond_int64_keep_their_exact_values():
    ids = [2**64 + i for i in range(300)] + [5]
    b = BlockIds.from_list(ids)
    assert b.runs == ((2**64, 300), (5, 1)) and b.max_id == 2**64 + 299


def _wire(seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    runs, at = [], 0
    for _ in range(200):
        at += rng.choice([0, 0, 1, 5])  # 0: continues the run before, which the result must join
        n = rng.randint(1, 6)
        runs.append([at, n])
        at += n
    return runs + [[3, 2], [5, 4]]  # a jump back, then a continuation of it


@pytest.mark.parametrize("seed", range(3))
def test_many_wire_runs_give_what_the_loop_gives(seed, monkeypatch):
    runs = _wire(seed)
    fast, ref = BlockIds.from_runs(runs), _by_loop(monkeypatch, BlockIds.from_runs, runs)
    assert fast.runs == ref.runs and len(fast) == len(ref) and fast.max_id == ref.max_id
    assert fast.tolist() == ref.tolist() and fast.to_wire() == [list(r) for r in ref.runs]


@pytest.mark.parametrize("bad, match", [
    ([1, 2, 3], "pair of ints"), ([1], "pair of ints"), ((1, 2), "pair of ints"), ([1, True], "pair of ints"),
    ([1.0, 2], "pair of ints"), (5, "pair of ints"), ([2**64, 1], None), ([-3, 2], "non-negative"),
    ([4, 0], "empty"), ([4, -2], "empty"), ([0, MAX_IDS], "more than"), ([2**63 - 1, 1], None),
])
@pytest.mark.parametrize("at", [0, 40, 99])
def test_many_wire_runs_with_a_bad_one_raise_the_loops_error(bad, match, at, monkeypatch):
    runs = [[10 * i, 3] for i in range(100)]
    runs[at] = bad
    try:
        expected = _by_loop(monkeypatch, BlockIds.from_runs, runs)
    except BlockIdsError as e:
        with pytest.raises(BlockIdsError) as got:
            BlockIds.from_runs(runs, "block ids")
        assert str(got.value) == str(e) and (match is None or match in str(e))
    else:  # ids past int64 are valid runs (refused later, outside every pool)
        assert match is None and BlockIds.from_runs(runs).runs == expected.runs
