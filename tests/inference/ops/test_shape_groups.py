"""The cuDNN path cuts a batch of equal-length images into power-of-two
groups (a few cached shapes instead of one plan per image count)."""
import pytest

from inference.ops.shape_groups import pow2_parts


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 11, 12, 64, 100])
def test_pow2_parts_cover_n_with_few_distinct_powers(n):
    parts = pow2_parts(n)
    assert sum(parts) == n
    assert len(set(parts)) == len(parts) and all(p & (p - 1) == 0 for p in parts)
    assert parts == sorted(parts, reverse=True)
