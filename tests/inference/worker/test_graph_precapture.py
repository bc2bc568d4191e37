"""Graphs captured at engine start (graph_capture.precapture, capture_all): every bucket once, largest
first, over buffers that write no KV and attend nothing; DOCPIPE_GRAPH_PRECAPTURE=0 leaves each bucket
to its first use. Capture is off on the CPU, so a stand-in for capture_into records the requests and
keeps a graph whose replay runs the captured call eagerly; the GPU test captures for real."""
import gc
import logging

import pytest
import torch

from inference import LLM, SamplingParams
from inference.models.loader import load_model
from inference.ops import get_ops
from inference.worker import graph_capture, prefill_graph, vision_graph
from inference.worker.prefill_graph import PrefillGraphs
from inference.worker.vision_graph import VisionGraphs
from qwen2vl_tiny import image_prompt, make_image


class EagerGraph:
    """A 'graph' whose replay runs the call it was given: the static-buffer path, uncaptured."""
    def __init__(self, fn):
        self.replay = fn


@pytest.fixture
def recorder(monkeypatch):
    """Replaces capture_into in both graph modules; returns the requests as (kind, bucket, state)."""
    calls = []

    def fake_capture_into(owner, key, fn, device, what, log):
        state = {"tiles_unused": bool((owner.tiles == -1).all())}
        if isinstance(owner, PrefillGraphs):
            state["slots_unused"] = bool((owner.slot_mapping == -1).all())
        fn()  # the warm-up call capture() runs first, on the buffers as they are
        calls.append((type(owner).__name__, key, state))
        owner.graphs[key] = EagerGraph(fn)
        return True

    monkeypatch.setattr(vision_graph, "capture_into", fake_capture_into)
    monkeypatch.setattr(prefill_graph, "capture_into", fake_capture_into)
    return calls


def _vision(max_patches=4096):
    model = load_model("dummy:tiny", torch.float32, torch.device("cpu"), get_ops(torch.device("cpu")), seed=3)
    graphs = VisionGraphs(model.visual, model.visual.blocks[0].ops, torch.float32, torch.device("cpu"), max_patches)
    assert not graphs.capture  # off on the CPU: forced on below, with capture_into replaced
    graphs.capture = True
    return model.visual, graphs


def _prefill(tiny_ckpt):
    llm = LLM(tiny_ckpt, dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=40, max_num_seqs=4,
              max_model_len=64, mode="eager", max_num_batched_tokens=1024)
    graphs = PrefillGraphs(llm.engine.runner)
    graphs.capture = True
    return llm.engine.runner, graphs


def test_vision_capture_all_takes_every_bucket_once_largest_first(recorder):
    _, graphs = _vision()
    assert graphs.pixels is None  # buffers not made yet: capture_all makes them before any capture
    assert graphs.capture_all() == len(graphs.buckets) == 4
    assert [b for _, b, _ in recorder] == sorted(graphs.buckets, reverse=True) == [4096, 3072, 2048, 1024]
    assert all(state["tiles_unused"] for _, _, state in recorder)
    assert set(graphs.graphs) == set(graphs.buckets)
    assert graphs.capture_all() == 0 and len(recorder) == 4  # all there: nothing captured twice


def test_prefill_capture_all_writes_no_kv(tiny_ckpt, recorder):
    runner, graphs = _prefill(tiny_ckpt)
    # a past step's KV slots and tiles left in the buffers: capture_all must not replay them
    graphs.slot_mapping.copy_(torch.arange(graphs.slot_mapping.numel()) % (runner.num_kv_blocks * runner.block_size))
    graphs.tiles.zero_()
    graphs.embeds.normal_()
    before = runner.kv_pool.clone()
    assert graphs.capture_all() == len(graphs.buckets) == 4
    assert [b for _, b, _ in recorder] == [1024, 768, 512, 256]
    assert all(state["slots_unused"] and state["tiles_unused"] for _, _, state in recorder)
    assert torch.equal(runner.kv_pool, before), "a capture call wrote into the KV pool"


def test_capture_all_respects_the_flags(tiny_ckpt, recorder):
    _, vision = _vision()
    vision.capture = False  # static path run eagerly (CPU): nothing to capture
    assert vision.capture_all() == 0 and vision.pixels is None
    runner, prefill = _prefill(tiny_ckpt)
    prefill.enabled = False  # no tiled launch on this backend, or turned off by a failed capture
    assert prefill.capture_all() == 0
    assert not recorder


def test_a_failed_capture_stops_the_rest(monkeypatch):
    _, graphs = _vision()
    tried = []

    def failing(owner, key, fn, device, what, log):
        tried.append(key)
        owner.enabled = False  # what capture_into does when the capture raises
        return False

    monkeypatch.setattr(vision_graph, "capture_into", failing)
    assert graphs.capture_all() == 0
    assert tried == [4096] and not graphs.graphs


def _grids():
    return [(1, 4, 6), (1, 8, 4)]  # 24 + 32 patches: bucket 1024


def _pixels(visual, grids):
    n = sum(t * h * w for t, h, w in grids)
    gen = torch.Generator().manual_seed(5)
    return torch.randn(n, visual.patch_embed.proj.weight[0].numel(), generator=gen)


@pytest.mark.parametrize("switch", [None, "0"], ids=["default-on", "off"])
def test_precapture_switch(tiny_ckpt, recorder, monkeypatch, caplog, switch):
    if switch is None:
        monkeypatch.delenv(graph_capture.PRECAPTURE_ENV, raising=False)
    else:
        monkeypatch.setenv(graph_capture.PRECAPTURE_ENV, switch)
    visual, vision = _vision()
    _, prefill = _prefill(tiny_ckpt)
    with caplog.at_level(logging.INFO, logger=graph_capture.__name__):
        count = graph_capture.precapture([vision, None, prefill])
    if switch is None:
        assert count == len(vision.buckets) + len(prefill.buckets) == len(recorder)
        assert [kind for kind, _, _ in recorder] == ["VisionGraphs"] * 4 + ["PrefillGraphs"] * 4
        assert f"captured {count} CUDA graphs" in caplog.text
    else:
        assert count == 0 and not recorder and not vision.graphs and not prefill.graphs
    # a call afterwards replays (switch on) or captures its bucket on first use (lazy fallback)
    start = len(recorder)
    grids = _grids()
    pixels = _pixels(visual, grids)
    got = vision.run(pixels, grids)
    torch.testing.assert_close(got, visual(pixels, grids), rtol=1e-5, atol=1e-5)
    assert [b for _, b, _ in recorder[start:]] == ([] if switch is None else [1024])


def _release_device_memory():
    gc.collect()
    torch.cuda.empty_cache()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="graph capture needs a CUDA device")
def test_engine_start_captures_every_bucket_on_the_gpu(tiny_ckpt, monkeypatch):
    monkeypatch.delenv(graph_capture.PRECAPTURE_ENV, raising=False)
    requests = [{"prompt_token_ids": image_prompt([5], [6, 7]), "images": [make_image(56, 84, 9)]},
                {"prompt_token_ids": [8, 9, 10]},
                {"prompt_token_ids": image_prompt([11] * 9, [12]), "images": [make_image(112, 56, 4)]}]
    # penalties and an n-gram ban: the sampler's step graphs run too
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True, no_repeat_ngram_size=3,
                            presence_penalty=0.5)
    # buckets 256 and 512: eager steps pad to 256 too, so both sides multiply matrices of the same shapes
    kwargs = dict(dtype="float32", device="cuda", kv_block_size=16, max_num_seqs=8, max_model_len=512,
                  max_num_batched_tokens=512, gpu_memory_utilization=0.2)
    _release_device_memory()
    want = LLM(tiny_ckpt, mode="eager", **kwargs).generate(requests, params)
    _release_device_memory()
    llm = LLM(tiny_ckpt, mode="graph", **kwargs)
    runner = llm.engine.runner
    assert runner.vision_graphs is not None and runner.prefill_graphs is not None
    for graphs in (runner.vision_graphs, runner.prefill_graphs):
        assert graphs.enabled, f"{type(graphs).__name__}: a capture failed at start"
        assert set(graphs.graphs) == set(graphs.buckets), f"{type(graphs).__name__}: buckets left uncaptured"
    assert runner.graphs.graphs and runner.sampler.graphs.graphs, "no decode or sampler graphs at start"
    sets = (runner.vision_graphs, runner.prefill_graphs, runner.graphs, runner.sampler.graphs)
    captured = {id(g) for s in sets for g in s.graphs.values()}
    got = llm.generate(requests, params)
    assert [o.token_ids for o in got] == [o.token_ids for o in want]
    after = {id(g) for s in sets for g in s.graphs.values()}
    assert after == captured, "a step captured a graph the start should have"
    del llm, runner
    _release_device_memory()


def test_decode_capture_all_takes_rows_by_width_buckets_largest_first(tiny_ckpt, monkeypatch):
    from inference.worker import cuda_graph

    llm = LLM(tiny_ckpt, dtype="float32", device="cpu", kv_block_size=16, num_kv_blocks=40, max_num_seqs=4,
              max_model_len=16384, mode="eager", max_num_batched_tokens=1024)
    graphs = cuda_graph.DecodeGraphs(llm.engine.runner)
    assert graphs.capture_all() == 0  # capture is off on the CPU
    graphs.capture = True
    taken = []
    monkeypatch.setattr(graphs, "_capture", lambda size, width: taken.append((size, width)) or object())
    monkeypatch.setattr(cuda_graph, "PRECAPTURE_TOKENS", 4096)
    # widths 16..1024 blocks of 16 tokens; those covering up to 4096 tokens are captured at start
    assert graphs.capture_all() == 3 * 5
    assert taken[:6] == [(4, 256), (4, 128), (4, 64), (4, 32), (4, 16), (2, 256)]
    assert {w for _, w in taken} == {16, 32, 64, 128, 256} and {s for s, _ in taken} == {1, 2, 4}
    assert graphs.capture_all() == 0  # all there


def test_token_history_reserve_allocates_once():
    from inference.worker.token_history import TokenHistory

    history = TokenHistory(torch.device("cpu"))
    history.reserve(9, 2048)
    assert (history.capacity, history.width, history.generation) == (9, 2048, 1)
    history.reserve(4, 1024)  # within: nothing reallocated
    assert (history.capacity, history.width, history.generation) == (9, 2048, 1)
    assert len(history.free) == 9
