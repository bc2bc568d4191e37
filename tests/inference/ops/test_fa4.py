"""FlashAttention-4's forward (inference/ops/cuda/fa4.py) as the vision attention: against the reference
backend on layout pages and mixed lengths, with q, k, v views of one packed qkv (what the encoder
passes). Needs a GPU the package has a kernel for and the optional package (`pip install 'docpipe[hopper]'`)."""
from __future__ import annotations

import pytest
import torch

from op_checks import poison, rel_err

fa4 = pytest.importorskip("inference.ops.cuda.fa4", reason="needs triton (CUDA backend package)")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
HEADS, DIM = 16, 80  # MinerU2.5's vision tower


@pytest.fixture(autouse=True, scope="module")
def _needs_fa4():
    if fa4._failed:  # an earlier test's call made the package fail: that is a failure, not a skip
        pytest.fail(f"flash-attn-4 failed earlier in this run: {fa4._failed[0]}")
    if not fa4.available(torch.empty(1, 1, DIM, device="cuda", dtype=torch.bfloat16)):
        pytest.skip("needs a Hopper/Blackwell GPU and the flash-attn-4 package")


def _packed(lengths, dtype):
    gen = torch.Generator(device="cuda").manual_seed(0)
    qkv = torch.randn(sum(lengths), 3, HEADS, DIM, device="cuda", generator=gen).to(dtype)
    cu = torch.tensor([0, *lengths], device="cuda").cumsum(0, dtype=torch.int32)
    q, k, v = qkv.unbind(1)
    return q, k, v, cu


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("lengths", [[5476, 5476], [5476, 1200, 300, 77, 1]], ids=["pages", "mixed"])
def test_matches_reference(ref, lengths, dtype):
    q, k, v, cu = _packed(lengths, dtype)
    scale = DIM ** -0.5
    expected = ref.vision_attention(q, k, v, cu, max(lengths), scale)  # the reference computes in fp32
    poison()
    out = fa4.attention(q, k, v, cu, max(lengths), scale)
    assert out.shape == q.shape and out.dtype == dtype
    assert rel_err(out, expected) <= 1e-2
