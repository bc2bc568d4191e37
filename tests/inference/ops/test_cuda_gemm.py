"""The fused fc1 GEMM (inference/ops/cuda/gemm.py) against the reference backend's
quick_gelu(F.linear) on float64 copies: ‖out − ref‖/‖ref‖ ≤ 1e-2 for bf16/fp16 operands, no
element left unwritten (the output's memory is filled with NaN first), eager and replayed
from a CUDA graph; operands it does not take go to the unfused pair with the same result."""
from __future__ import annotations

import pytest
import torch

from op_checks import DEV, poison, rel_err

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused GEMM needs a CUDA device"),
]


def _fused_here() -> bool:
    from inference.ops.cuda import gemm
    return gemm.fused_on(torch.cuda.current_device())


needs_fused = pytest.mark.skipif(not torch.cuda.is_available() or not _fused_here(),
                                 reason="the fused GEMM runs on sm_90 with DOCPIPE_FUSED_GEMM on")


def operands(rows: int, n: int, dtype: torch.dtype, bias: bool = True, k: int = 1280):
    x = torch.randn(rows, k, dtype=dtype, device=DEV)
    w = torch.randn(n, k, dtype=dtype, device=DEV) / k ** 0.5
    return x, w, torch.randn(n, dtype=dtype, device=DEV) if bias else None


def reference(ref, x, w, b):
    return ref.linear_quick_gelu(x.double(), w.double(), None if b is None else b.double())


@needs_fused
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("rows,n", [(5477, 5120), (2 * 5476 + 77, 5120), (2 * 5476 + 77, 640)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_matches_the_reference(ops, ref, dtype, rows, n, with_bias):
    # ragged last row tile; n=640: a ragged last column tile (640 = 2.5 tiles of 256)
    from inference.ops.cuda.gemm import linear_act, supported

    x, w, b = operands(rows, n, dtype, with_bias)
    assert supported(x, w, b)
    poison(rows * n * 2)
    out = ops.linear_quick_gelu(x, w, b)
    assert out.shape == (rows, n) and out.dtype == dtype
    assert rel_err(out, reference(ref, x, w, b)) <= 1e-2
    poison(rows * n * 2)
    plain = linear_act(x, w, b)  # no activation: the linear alone
    expected = torch.nn.functional.linear(x.double(), w.double(), None if b is None else b.double())
    assert rel_err(plain, expected) <= 1e-2


@needs_fused
def test_fused_replays_from_a_cuda_graph(ops, ref):
    # captured once over static buffers (as the vision encoder's graphs do), replayed on new inputs
    from inference.ops.cuda.gemm import supported

    x, w, b = operands(2 * 5476 + 77, 5120, torch.bfloat16)
    assert supported(x, w, b)
    ops.linear_quick_gelu(x, w, b)  # builds the kernel outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = ops.linear_quick_gelu(x, w, b)
    for _ in range(2):
        x.copy_(torch.randn_like(x))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert rel_err(out, reference(ref, x, w, b)) <= 1e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_operands_it_does_not_take_give_the_same_result(ops, ref, dtype):
    # fp32, few rows, a width TMA tiles do not take, a transposed or misaligned input, a strided
    # bias: not supported, so the unfused pair runs; same result either way
    from inference.ops.cuda.gemm import supported

    x, w, b = operands(11029, 640, dtype)
    cases = [operands(37, 640, dtype), operands(11029, 640, dtype, k=1000),
             (x.t().contiguous().t(), w, b),
             (torch.empty(11029 * 1280 + 1, dtype=dtype, device=DEV)[1:].view(11029, 1280).copy_(x), w, b),
             (x, w, torch.randn(2 * 640, dtype=dtype, device=DEV)[::2])]
    for cx, cw, cb in cases:
        assert not supported(cx, cw, cb)
        out = ops.linear_quick_gelu(cx, cw, cb)
        assert rel_err(out, reference(ref, cx, cw, cb)) <= (1e-2 if dtype != torch.float32 else 1e-5)
