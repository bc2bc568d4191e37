"""Coalescing of block pairs into runs and of runs into work units."""
import pytest

from inference.transfer.plan import Run, Segment, coalesce, plan_units


def test_consecutive_pairs_become_one_run():
    assert coalesce([(3, 10), (4, 11), (5, 12)]) == [Run(3, 10, 3)]


def test_break_when_either_side_jumps():
    pairs = [(0, 0), (1, 1), (2, 5), (3, 6), (7, 7), (8, 9)]
    assert coalesce(pairs) == [Run(0, 0, 2), Run(2, 5, 2), Run(7, 7, 1), Run(8, 9, 1)]


def test_unordered_input_is_sorted_by_source():
    assert coalesce([(5, 2), (3, 0), (4, 1)]) == [Run(3, 0, 3)]


def test_reversed_destination_does_not_merge():
    assert coalesce([(0, 3), (1, 2), (2, 1)]) == [Run(0, 3, 1), Run(1, 2, 1), Run(2, 1, 1)]


def test_duplicate_destination_is_an_error():
    with pytest.raises(ValueError, match="twice"):
        coalesce([(0, 1), (2, 1)])


def test_empty_transfer():
    assert coalesce([]) == [] and plan_units([], 8, 16, 32) == []


def test_units_cover_every_byte_once():
    runs = [Run(0, 4, 3), Run(9, 0, 1), Run(20, 30, 10)]
    units = plan_units(runs, block_bytes=100, min_unit_bytes=250, max_unit_bytes=400)
    src_bytes, dst_bytes = set(), set()
    for u in units:
        for s in u.segments:
            assert s.num_bytes <= 400
            src_bytes.update(range(s.src_offset_bytes, s.src_offset_bytes + s.num_bytes))
            dst_bytes.update(range(s.dst_offset_bytes, s.dst_offset_bytes + s.num_bytes))
    expected_src = set(range(0, 300)) | set(range(900, 1000)) | set(range(2000, 3000))
    expected_dst = set(range(400, 700)) | set(range(0, 100)) | set(range(3000, 4000))
    assert src_bytes == expected_src and dst_bytes == expected_dst
    assert all(u.num_bytes >= 250 for u in units[:-1])


def test_small_runs_are_grouped_into_one_unit():
    runs = [Run(2 * i, 2 * i, 1) for i in range(4)]  # four separate 64 KiB blocks
    units = plan_units(runs, block_bytes=64 << 10, min_unit_bytes=256 << 10, max_unit_bytes=4 << 20)
    assert len(units) == 1 and len(units[0].segments) == 4 and units[0].num_bytes == 256 << 10


def test_large_run_is_split_at_max_unit():
    units = plan_units([Run(0, 0, 10)], block_bytes=1 << 20, min_unit_bytes=256 << 10, max_unit_bytes=4 << 20)
    assert [u.num_bytes for u in units] == [4 << 20, 4 << 20, 2 << 20]
    assert units[1].segments == [Segment(4 << 20, 4 << 20, 4 << 20)]
