"""Cutting a batch into a few fixed shapes.

Backends whose kernels are planned or compiled per input shape (cuDNN
attention plans, for one) see a different image count at every step;
splitting a count into powers of two keeps the set of shapes small
(at most log2(max count) + 1), so plans are built once and reused."""
from __future__ import annotations


def pow2_parts(n: int) -> list[int]:
    """n as a sum of distinct powers of two, largest first (13 -> [8, 4, 1])."""
    return [1 << b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]
