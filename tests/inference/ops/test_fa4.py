"""FlashAttention-4's forward (inference/ops/cuda/fa4.py) as the vision attention: against the fp32
reference on layout pages and mixed lengths, with q, k, v views of one packed qkv (what the encoder
passes), and replayed from a CUDA graph on new inputs. Needs a GPU the package has a kernel for and the
optional package (`pip install 'docpipe[hopper]'`)."""
from __future__ import annotations

import pytest
import torch

from op_checks import poison, rel_err

fa4 = pytest.importorskip("inference.ops.cuda.fa4", reason="needs triton (CUDA backend package)")


def _usable() -> bool:
    return torch.cuda.is_available() and fa4.available(torch.empty(1, 1, 80, device="cuda", dtype=torch.bfloat16))


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _usable(), reason="needs a Hopper/Blackwell GPU and the flash-attn-4 package"),
]
HEADS, DIM = 16, 80  # MinerU2.5's vision tower


def _packed(lengths, dtype=torch.bfloat16, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    qkv = torch.randn(sum(lengths), 3, HEADS, DIM, device="cuda", generator=gen).to(dtype)
    cu = torch.tensor([0, *lengths], device="cuda").cumsum(0, dtype=torch.int32)
    q, k, v = qkv.unbind(1)
    return q, k, v, cu


def _reference(q, k, v, cu, scale):
    out = torch.empty(q.shape, device="cuda", dtype=torch.float32)
    bounds = cu.tolist()
    for s, e in zip(bounds[:-1], bounds[1:]):
        qi, ki, vi = (t[s:e].float().transpose(0, 1) for t in (q, k, v))
        probs = torch.softmax((qi @ ki.transpose(1, 2)) * scale, dim=-1)
        out[s:e] = (probs @ vi).transpose(0, 1)
    return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("lengths", [[5476, 5476], [5476, 1200, 300, 77, 1]], ids=["pages", "mixed"])
def test_matches_reference(lengths, dtype):
    q, k, v, cu = _packed(lengths, dtype)
    scale = DIM ** -0.5
    poison()
    out = fa4.attention(q, k, v, cu, max(lengths), scale)
    assert out.shape == q.shape and out.dtype == dtype
    assert rel_err(out, _reference(q, k, v, cu, scale)) <= 1e-2


def test_graph_replay_on_new_inputs():
    q, k, v, cu = _packed([5476, 5476])
    scale = DIM ** -0.5
    fa4.attention(q, k, v, cu, 5476, scale)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fa4.attention(q, k, v, cu, 5476, scale)
    new_q, new_k, new_v, _ = _packed([5476, 5476], seed=1)
    q.copy_(new_q), k.copy_(new_k), v.copy_(new_v)
    graph.replay()
    torch.cuda.synchronize()
    assert rel_err(out, _reference(q, k, v, cu, scale)) <= 1e-2
