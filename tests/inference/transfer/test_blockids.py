"""Block ids as runs: BlockIds against plain id lists (round trip through the
wire, malformed input refused with BlockIdsError, scattered ids, large
counts), coalesce_runs against the per-id coalesce_ids, and the device index
expansion of cuda-ipc's many-runs path against the ids themselves."""
import json
import random

import numpy as np
import pytest
import torch

from inference.transfer import TransferError, TransferMeta
from inference.transfer.blockids import MAX_IDS, BlockIds, BlockIdsError
from inference.transfer.cuda_ipc import block_indices
from inference.transfer.plan import _LOOP_MAX_IDS, coalesce_ids, coalesce_runs


def _cases(seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    scattered = rng.sample(range(10_000), 3000)
    runs_of_7 = [b for s in rng.sample(range(0, 5000, 10), 40) for b in range(s, s + 7)]
    return [[], [0], [5, 6, 7], list(range(3, 3 + 4096)), [9, 8, 7], [4, 4, 5], scattered, runs_of_7,
            list(range(100, 100 + _LOOP_MAX_IDS + 3)) + [2] + list(range(7, 20))]


@pytest.mark.parametrize("ids", _cases(0))
def test_runs_hold_the_same_ids_and_survive_the_wire(ids):
    b = BlockIds.from_list(ids)
    assert b.tolist() == ids and list(b) == ids and len(b) == len(ids) and b == ids
    assert b.max_id == (max(ids) if ids else -1)
    assert all(f1 != f0 + c0 for (f0, c0), (f1, _) in zip(b.runs, b.runs[1:]))  # maximal runs
    back = BlockIds.from_runs(json.loads(json.dumps(b.to_wire())))
    assert back == b and back.tolist() == ids


def test_one_run_is_one_pair_on_the_wire_however_many_blocks():
    ids = list(range(12, 12 + MAX_IDS))
    b = BlockIds.from_list(ids)
    assert b.to_wire() == [[12, MAX_IDS]] and len(b) == MAX_IDS and b.max_id == 11 + MAX_IDS
    assert BlockIds.from_list(range(12, 12 + MAX_IDS)) == b


def test_wire_runs_are_made_canonical():
    assert BlockIds.from_runs([[4, 2], [6, 3], [1, 1]]).runs == ((4, 5), (1, 1))


@pytest.mark.parametrize("bad, match", [
    ({"a": 1}, "list of"),
    ([[1, 2, 3]], "pair of ints"),
    ([[1, True]], "pair of ints"),
    ([[1.0, 2]], "pair of ints"),
    ([[0, 1], 5], "pair of ints"),
    ([[-3, 2]], "non-negative"),
    ([[4, 0]], "empty"),
    ([[4, -2]], "empty"),
    ([[0, MAX_IDS], [MAX_IDS + 5, 1]], "more than"),
])
def test_malformed_wire_runs_are_refused(bad, match):
    with pytest.raises(BlockIdsError, match=match) as e:
        BlockIds.from_runs(bad, "dst_block_ids")
    assert isinstance(e.value, TransferError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("bad", [[1, True], [True, 2], [0, 1.0, 2], [3, np.int64(4)], [-1, 0], [2, -5], "ab", (1, 2), [None]])
def test_malformed_id_lists_are_refused(bad):
    with pytest.raises(BlockIdsError, match="non-negative ints"):
        BlockIds.from_list(bad)


def test_meta_from_wire_refuses_malformed_runs_with_a_clear_error():
    d = TransferMeta("r", [0, 1], [5, 6], 2, 0, 0).to_wire()
    assert d["src_block_ids"] == [[0, 2]] and d["dst_block_ids"] == [[5, 2]]
    d["src_block_ids"] = [[0, 1], [1, "x"]]
    with pytest.raises(TransferError, match="src_block_ids"):
        TransferMeta.from_wire(d)


def test_first_at_least_lists_out_of_pool_ids_in_order():
    b = BlockIds.from_list([50, 51, 2, 60, 61, 62, 63, 64])
    assert b.first_at_least(51, 4) == [51, 60, 61, 62]
    assert b.first_at_least(100, 4) == []


def test_pickles_as_runs():
    import pickle
    b = BlockIds.from_list([3, 4, 9])
    assert pickle.loads(pickle.dumps(b)) == b


@pytest.mark.parametrize("seed", range(6))
def test_coalesce_runs_matches_the_per_id_path(seed):
    rng = random.Random(seed)
    n = rng.choice([1, 9, 40, 700])
    kinds = [
        (list(range(7, 7 + n)), list(range(90, 90 + n))),
        (rng.sample(range(4 * n), n), rng.sample(range(4 * n), n)),
        ([b for i in range(n) for b in (2 * i, 2 * i + 1)], list(range(3, 3 + 2 * n))),
        ([rng.randrange(3) for _ in range(n)], rng.sample(range(4 * n), n)),  # a source block sent twice
    ]
    for src, dst in kinds:
        s, d = BlockIds.from_list(src), BlockIds.from_list(dst)
        assert coalesce_runs(s.runs, d.runs) == coalesce_ids(src, dst)


def test_coalesce_runs_refuses_what_coalesce_ids_refuses():
    with pytest.raises(ValueError, match="twice"):
        coalesce_runs(BlockIds.from_list([0, 1, 2]).runs, BlockIds.from_list([5, 6, 5]).runs)
    with pytest.raises(ValueError, match="twice"):
        coalesce_runs(BlockIds.from_list([0, 1, 2, 3]).runs, BlockIds.from_list([10, 11, 11, 12]).runs)
    with pytest.raises(ValueError, match="3 source blocks vs 2"):
        coalesce_runs(BlockIds.from_list([0, 1, 2]).runs, BlockIds.from_list([4, 5]).runs)
    with pytest.raises(ValueError, match="3 source blocks vs 2"):
        coalesce_runs(BlockIds.from_list([0, 1, 5]).runs, BlockIds.from_list([4, 9]).runs)
    assert coalesce_runs((), ()) == []


def test_block_indices_expand_runs_on_the_device():
    src = BlockIds.from_list([4, 5, 6, 20, 1, 2])
    dst = BlockIds.from_list([9, 0, 1, 2, 30, 31])
    runs = coalesce_runs(src.runs, dst.runs)
    s_idx, d_idx = block_indices(runs, torch.device("cpu"))
    pairs = sorted(zip(src.tolist(), dst.tolist()))
    assert list(zip(s_idx.tolist(), d_idx.tolist())) == pairs
    assert s_idx.dtype == d_idx.dtype == torch.long


def test_meta_takes_lists_ranges_or_block_ids_alike():
    a = TransferMeta("r", list(range(8, 40)), [1, 2, 3, 9], 60, 0, 0)
    b = TransferMeta("r", range(8, 40), BlockIds.from_list([1, 2, 3, 9]), 60, 0, 0)
    assert a == b and a.src_block_ids.runs == ((8, 32),) and len(a.dst_block_ids) == 4
    d = a.to_dict()
    assert d["src_block_ids"] == list(range(8, 40)) and json.loads(json.dumps(d))["dst_block_ids"] == [1, 2, 3, 9]
    with pytest.raises(ValueError, match="dst_block_ids"):
        TransferMeta("r", [0], range(-2, 3), 1, 0, 0)


@pytest.mark.parametrize("ids", [[], [5], [3, 4, 5, 9, 10, 2], list(range(100, 140)) + [7, 8]])
def test_head_is_the_leading_ids(ids):
    b = BlockIds.from_list(ids)
    for n in range(len(ids) + 1):
        assert b.head(n).tolist() == ids[:n] and b.head(n) == BlockIds.from_list(ids[:n])
    with pytest.raises(BlockIdsError):
        b.head(len(ids) + 1)
