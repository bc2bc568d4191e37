"""Graph-shaped vision encoder calls: the static, bucket-padded buffers (run eagerly on the CPU,
capture=False) give the encoder's own output; on a GPU the captured replay matches the eager call."""
import pytest
import torch

from inference.models.loader import load_model
from inference.ops import get_ops
from inference.worker.vision_graph import MIN_AVG_PATCHES, VisionGraphs, patch_buckets

GRIDS = [(1, 4, 6), (1, 2, 2), (1, 8, 4), (1, 2, 6)]  # patches 24, 4, 32, 12: a partial last tile, a tiny image


def test_patch_buckets_step_up_with_size():
    buckets = patch_buckets(40000)
    assert buckets[:3] == [1024, 2048, 3072] and 16384 in buckets and 18432 in buckets
    assert buckets[-2:] == [36864, 40000]
    assert all(b < c for b, c in zip(buckets, buckets[1:]))


def _encoder(device, dtype, max_patches):
    model = load_model("dummy:tiny", dtype, torch.device(device), get_ops(torch.device(device)), seed=3)
    ops = model.visual.blocks[0].ops
    return model.visual, VisionGraphs(model.visual, ops, dtype, torch.device(device), max_patches,
                                      capture=device == "cuda")


def _pixels(visual, grids, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = sum(t * h * w for t, h, w in grids)
    return torch.randn(n, visual.patch_embed.proj.weight[0].numel(), generator=gen).to(device=device, dtype=dtype)


def test_padded_static_call_equals_the_encoder_on_the_cpu():
    visual, graphs = _encoder("cpu", torch.float32, max_patches=4096)
    pixels = _pixels(visual, GRIDS, torch.float32, "cpu")
    want = visual(pixels, GRIDS)
    assert graphs.bucket([24, 4, 32, 12]) == 1024  # 72 patches padded to 1024
    got = graphs.run(pixels, GRIDS)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # a second call of other images through the same buffers (stale rows from the first stay behind)
    grids = [(1, 2, 4)]
    pixels = _pixels(visual, grids, torch.float32, "cpu", seed=1)
    torch.testing.assert_close(graphs.run(pixels, grids), visual(pixels, grids), rtol=1e-5, atol=1e-5)


def test_calls_no_bucket_takes_run_eagerly():
    _, graphs = _encoder("cpu", torch.float32, max_patches=2048)
    assert graphs.bucket([2048]) == 2048
    assert graphs.bucket([2052]) is None  # past the largest bucket
    # more images than the 1024 bucket keeps tile slots for: the next bucket
    many = [4] * (1024 // MIN_AVG_PATCHES + 1)
    assert graphs.bucket(many) == 2048
    assert graphs.bucket([4] * (2048 // MIN_AVG_PATCHES + 1)) is None
    assert graphs.bucket([]) is None
    assert graphs.bucket([24, 6]) is None  # 6 patches: not whole 2x2 merge groups


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="graph capture needs a CUDA device")
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2e-2), (torch.float32, 1e-4)])
def test_captured_call_matches_the_eager_encoder_on_the_gpu(dtype, tol):
    visual, graphs = _encoder("cuda", dtype, max_patches=8192)
    graphs._alloc()
    for seed, grids in enumerate([GRIDS, [(1, 36, 36)], GRIDS[:2], [(1, 64, 40), (1, 6, 8)]]):
        # padding rows hold anything (stale activations): NaN there must not reach a real row
        for buf in (graphs.pixels, graphs.cos, graphs.sin):
            buf.fill_(float("nan"))
        pixels = _pixels(visual, grids, dtype, "cuda", seed)
        want = visual(pixels, grids).float()
        got = graphs.run(pixels, grids)
        assert got is not None, "the call should have replayed a graph"
        assert not got.isnan().any(), f"{grids}: NaN from the padding rows reached the output"
        err = ((got.float() - want).norm() / want.norm()).item()
        assert err <= tol, f"{grids}: rel err {err:.2e}"
    assert len(graphs.graphs) == 3  # buckets 1024 (twice), 2048, 3072
