"""The vision attention's run-time kernel choice (inference/ops/cuda/vision_attention.py),
with the kernels replaced by CPU stand-ins: one timing per key, the fastest kept, a
kernel failing later dropped and the choice made again, every candidate failing an
error, cuDNN offered only for page-sized uniform batches."""
import pytest
import torch

va = pytest.importorskip("inference.ops.cuda.vision_attention", reason="needs triton (CUDA backend module)")


@pytest.fixture
def stand_ins(monkeypatch):
    calls, times, broken = [], {}, set()

    def kernel(name):
        def run(*args, **kwargs):
            calls.append(name)
            if name in broken:
                raise RuntimeError(f"{name}: no plan for this shape")
            return torch.zeros(1)
        return run

    monkeypatch.setattr(va, "varlen_available", lambda q: True)
    monkeypatch.setattr(va, "_varlen_attn", kernel("varlen"))
    monkeypatch.setattr(va, "uniform_cudnn", kernel("cudnn"))
    default = va._triton_configs()["triton"]
    monkeypatch.setattr(va, "_triton", lambda q, k, v, cu, max_seqlen, scale, config=None: kernel(
        "triton" if config == default else "triton:other")())
    monkeypatch.setattr(va, "_time_ms", lambda fn: times.get(_name_of(fn, calls), 1.0))
    monkeypatch.setattr(va, "_CHOICE", {})
    monkeypatch.setattr(va, "_FORCED", "auto")
    return calls, times, broken


def _name_of(fn, calls):
    before = len(calls)
    try:
        fn()
    except RuntimeError:
        return calls[before] + ":broken"
    return calls[before]


def _qkv(lengths, heads=2, dim=80):
    total = sum(lengths)
    cu = torch.tensor([0] + lengths).cumsum(0).to(torch.int32)
    q = torch.zeros(total, heads, dim)
    return q, q, q, cu, max(lengths)


def test_fastest_is_kept_per_key_and_cudnn_only_for_pages(stand_ins):
    calls, times, _ = stand_ins
    times.update({"varlen": 3.0, "triton": 2.0, "triton:other": 2.5, "cudnn": 1.0})
    q, k, v, cu, n = _qkv([300, 200])  # block crops: no cuDNN candidate
    va.vision_attention(q, k, v, cu, n, 0.1)
    assert calls[-1] == "triton" and "cudnn" not in calls
    calls.clear()
    va.vision_attention(*_qkv([310, 250])[:4], 310, 0.1)  # same bucket: no new timing
    assert calls == ["triton"]
    q, k, v, cu, n = _qkv([5476, 5476])  # two layout pages: cuDNN offered, and fastest
    va.vision_attention(q, k, v, cu, n, 0.1)
    assert calls[-1] == "cudnn"
    assert len(va._CHOICE) == 2


def test_a_chosen_kernel_failing_later_is_dropped(stand_ins):
    calls, times, broken = stand_ins
    times.update({"varlen": 3.0, "triton": 1.0, "triton:other": 2.0})
    q, k, v, cu, n = _qkv([400])
    va.vision_attention(q, k, v, cu, n, 0.1)
    assert calls[-1] == "triton"
    broken.add("triton")  # a later shape of the same bucket has no kernel
    calls.clear()
    va.vision_attention(q, k, v, cu, n, 0.1)
    assert calls[0] == "triton" and calls[-1] == "triton:other"


def test_every_candidate_failing_is_an_error(stand_ins):
    _, times, broken = stand_ins
    broken.update({"varlen", "triton", "triton:other"})
    times.update({"varlen:broken": float("inf"), "triton:broken": float("inf"), "triton:other:broken": float("inf")})
    q, k, v, cu, n = _qkv([128])
    with pytest.raises(RuntimeError, match="every candidate failed"):
        va.vision_attention(q, k, v, cu, n, 0.1)


def test_forced_choice_and_no_triton(stand_ins, monkeypatch):
    calls, times, _ = stand_ins
    times.update({"varlen": 3.0, "triton": 1.0, "triton:other": 1.0})
    monkeypatch.setattr(va, "_FORCED", "varlen")
    va.vision_attention(*_qkv([64]), 0.1)
    assert calls == ["varlen"]  # forced: no timing runs
    calls.clear()
    monkeypatch.setattr(va, "_FORCED", "no-triton")
    va.vision_attention(*_qkv([64]), 0.1)
    assert not any(c.startswith("triton") for c in calls)


def test_graph_tiles_block_follows_forced_choice(monkeypatch):
    """Graph-captured encoder calls run the Triton kernel: the CUDA Ops offer its tile block only when
    DOCPIPE_VISION_ATTN leaves that kernel in (auto, triton), and only for head dims and dtypes it takes."""
    from inference.ops.cuda.ops import Ops

    ops = Ops()
    block = va.graph_config().block_m
    for forced, expected in [("auto", block), ("triton", block), ("varlen", None), ("cudnn", None),
                             ("no-triton", None)]:
        monkeypatch.setattr(va, "_FORCED", forced)
        assert ops.vision_tiles_block(80, torch.bfloat16) == expected, forced
    monkeypatch.setattr(va, "_FORCED", "auto")
    assert ops.vision_tiles_block(80, torch.float64) is None


def test_graph_config_default_and_override(monkeypatch):
    from inference.ops.cuda.vision_flash import FlashConfig

    va.reset_config_caches()
    monkeypatch.delenv(va.GRAPH_CONFIG_ENV, raising=False)
    try:
        assert va.graph_config() == FlashConfig(128, 64, 4, 3, tma=True)
        assert list(va._triton_configs().values()) == [va.graph_config(),
                                                         FlashConfig(128, 64, 8, 3, tma=True, maxnreg=128)]
        va.reset_config_caches()
        monkeypatch.setenv(va.GRAPH_CONFIG_ENV, "m128n64w8s3tmar128")
        assert va.graph_config() == FlashConfig(128, 64, 8, 3, tma=True, maxnreg=128)
        assert list(va._triton_configs()) == ["triton"]  # the same config is not timed twice
        va.reset_config_caches()
        monkeypatch.setenv(va.GRAPH_CONFIG_ENV, "fast")
        with pytest.raises(ValueError, match="config name"):
            va.graph_config()
    finally:
        monkeypatch.delenv(va.GRAPH_CONFIG_ENV, raising=False)
        va.reset_config_caches()


def test_warm_choices_calls_the_smallest_eager_page_batches(monkeypatch):
    """warm_choices runs both eager kinds of a page batch (all pages; pages with a crop), at the fewest
    pages an encoder graph does not take, with q, k and v views of one packed qkv as the encoder hands
    them over (rotary in place)."""
    calls = []
    monkeypatch.setattr(va, "_CHOICE", {})

    def one_qkv(q, k, v):
        base = v.untyped_storage().data_ptr()
        return (q.untyped_storage().data_ptr() == base == k.untyped_storage().data_ptr()
                and not q.is_contiguous() and not k.is_contiguous())
    monkeypatch.setattr(va, "vision_attention", lambda q, k, v, cu, max_seqlen, scale: calls.append(
        (cu.tolist(), max_seqlen, tuple(q.shape), q.dtype, scale, one_qkv(q, k, v))))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    va.warm_choices(2, 16, torch.float32, torch.device("cpu"))
    from inference.worker.vision_graph import MAX_PATCHES

    page, n = va.PAGE_PATCHES, va.eager_pages()
    assert (n - 1) * page <= MAX_PATCHES < n * page  # the fewest pages no encoder graph takes
    pages = [page * i for i in range(n + 1)]
    assert calls == [(pages, page, (n * page, 2, 16), torch.float32, 0.25, True),
                     (pages + [n * page + 1024], page, (n * page + 1024, 2, 16), torch.float32, 0.25, True)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the candidates run on a CUDA device")
def test_warm_choices_on_the_gpu(monkeypatch):
    monkeypatch.setattr(va, "_CHOICE", {})
    va.warm_choices(16, 80, torch.bfloat16, torch.device("cuda"))
    assert {(k[0], k[1]) for k in va._CHOICE} == {(True, 8192), (False, 8192)}, va._CHOICE


def test_fa4_is_a_candidate_where_available(stand_ins, monkeypatch):
    """Where flash-attn-4 takes the call it is timed with the others and kept when fastest; where it
    does not (package missing, another GPU) it is never called; DOCPIPE_VISION_ATTN=fa4 forces it."""
    calls, times, _ = stand_ins
    from inference.ops.cuda import fa4

    monkeypatch.setattr(fa4, "attention", lambda *args: (calls.append("fa4"), torch.zeros(1))[1])
    monkeypatch.setattr(fa4, "available", lambda q: False)
    times.update({"varlen": 3.0, "triton": 2.0, "triton:other": 2.5, "cudnn": 1.5, "fa4": 1.0})
    va.vision_attention(*_qkv([5476, 5476])[:4], 5476, 0.1)
    assert "fa4" not in calls and calls[-1] == "cudnn"
    monkeypatch.setattr(fa4, "available", lambda q: True)
    monkeypatch.setattr(va, "_CHOICE", {})
    calls.clear()
    va.vision_attention(*_qkv([5476, 5476])[:4], 5476, 0.1)
    assert "fa4" in calls[:-1] and calls[-1] == "fa4"  # timed, then run
    times["fa4"] = 4.0
    monkeypatch.setattr(va, "_CHOICE", {})
    va.vision_attention(*_qkv([5476, 5476])[:4], 5476, 0.1)
    assert calls[-1] == "cudnn"
    monkeypatch.setattr(va, "_FORCED", "fa4")
    calls.clear()
    va.vision_attention(*_qkv([300, 200])[:4], 300, 0.1)
    assert calls == ["fa4"]


def test_fa4_import_failures_leave_it_out(monkeypatch, caplog):
    """Not installed (ImportError): no candidate, quietly. Installed but broken (its compiler libraries
    missing raise other errors at import): no candidate, with a warning."""
    import sys
    import types

    from inference.ops.cuda import fa4

    monkeypatch.setitem(sys.modules, "flash_attn.cute", None)  # import raises ImportError
    fa4._varlen_func.cache_clear()
    try:
        assert fa4._varlen_func() is None and "does not import" not in caplog.text

        class Broken(types.ModuleType):
            def __getattr__(self, name):
                raise OSError("libcute_dsl_runtime.so: cannot open shared object file")
        monkeypatch.setitem(sys.modules, "flash_attn.cute", Broken("flash_attn.cute"))
        fa4._varlen_func.cache_clear()
        assert fa4._varlen_func() is None and "does not import" in caplog.text
    finally:
        fa4._varlen_func.cache_clear()


def test_fa4_failing_once_is_no_candidate_again(monkeypatch):
    """A kernel that raises (a compile failure, a later error) marks the package failed: available() is
    False from then on, so no later shape pays for another attempt."""
    import types

    from inference.ops.cuda import fa4

    errors = [torch.cuda.OutOfMemoryError("out of memory"), AssertionError("no kernel for this configuration")]

    def broken(*args, **kwargs):
        raise errors.pop(0)
    monkeypatch.setattr(fa4, "_failed", [])
    monkeypatch.setattr(fa4, "_arch_ok", lambda index: True)
    monkeypatch.setattr(fa4, "_varlen_func", lambda: broken)
    q = types.SimpleNamespace(is_cuda=True, dtype=torch.bfloat16, shape=(10, 16, 80), device=types.SimpleNamespace(index=0))
    assert fa4.available(q)
    with pytest.raises(torch.cuda.OutOfMemoryError):  # this call's memory, not the kernel: still a candidate
        fa4.attention(q, q, q, None, 10, 0.1)
    assert fa4.available(q)
    with pytest.raises(AssertionError):
        fa4.attention(q, q, q, None, 10, 0.1)
    assert not fa4.available(q) and "AssertionError" in fa4._failed[0]


def test_a_chosen_fa4_raising_later_is_dropped(stand_ins, monkeypatch):
    """FA4 chosen, then raising something other than RuntimeError on a later call of its key: the call
    does not fail; the next fastest candidate runs and is kept."""
    calls, times, _ = stand_ins
    from inference.ops.cuda import fa4

    state = {"broken": False}

    def fake(*args):
        calls.append("fa4")
        if state["broken"]:
            raise AssertionError("fa4: unsupported")
        return torch.zeros(1)
    monkeypatch.setattr(fa4, "attention", fake)
    monkeypatch.setattr(fa4, "available", lambda q: True)
    times.update({"varlen": 3.0, "triton": 2.0, "triton:other": 2.5, "cudnn": 1.5, "fa4": 1.0})
    va.vision_attention(*_qkv([5476, 5476])[:4], 5476, 0.1)
    assert calls[-1] == "fa4"
    state["broken"] = True
    calls.clear()
    va.vision_attention(*_qkv([5476, 5476])[:4], 5476, 0.1)
    assert calls[0] == "fa4" and calls[-1] == "cudnn"


def test_fa4_failing_on_one_key_leaves_the_others_working(stand_ins, monkeypatch):
    """FA4 kept for two keys, then failing on one: that call runs another kernel, and the other key, whose
    kept choice is no candidate any more (the package is out), is timed again instead of failing."""
    calls, times, _ = stand_ins
    from inference.ops.cuda import fa4

    monkeypatch.setattr(fa4, "_failed", [])
    monkeypatch.setattr(fa4, "_arch_ok", lambda index: True)
    monkeypatch.setattr(fa4, "available", lambda q: not fa4._failed)

    def fake(*args):
        calls.append("fa4")
        if state["broken"]:
            fa4._failed.append("AssertionError: unsupported")
            raise AssertionError("fa4: unsupported")
        return torch.zeros(1)
    state = {"broken": False}
    monkeypatch.setattr(fa4, "attention", fake)
    times.update({"varlen": 3.0, "triton": 2.0, "triton:other": 2.5, "cudnn": 1.5, "fa4": 1.0})
    pages, crops = _qkv([5476, 5476]), _qkv([300, 200])
    va.vision_attention(*pages[:4], 5476, 0.1)
    va.vision_attention(*crops[:4], 300, 0.1)
    assert sorted(va._CHOICE.values()) == ["fa4", "fa4"]
    state["broken"] = True
    calls.clear()
    va.vision_attention(*pages[:4], 5476, 0.1)
    assert calls[0] == "fa4" and calls[-1] == "cudnn"
    calls.clear()
    va.vision_attention(*crops[:4], 300, 0.1)  # kept "fa4" is gone: timed again, no KeyError
    assert "fa4" not in calls and calls[-1] == "triton"
    assert "fa4" not in va._CHOICE.values()


def test_our_kernels_raising_a_bug_is_not_swallowed(stand_ins, monkeypatch):
    """Only RuntimeError (a kernel or plan the device or library refuses) drops one of our candidates;
    a TypeError from our code propagates."""
    calls, times, _ = stand_ins
    times.update({"varlen": 3.0, "triton": 1.0, "triton:other": 2.5})
    va.vision_attention(*_qkv([300, 200])[:4], 300, 0.1)
    assert calls[-1] == "triton"

    default, other = va._triton, va._triton_configs()["triton"]

    def buggy(q, k, v, cu, max_seqlen, scale, config=None):  # the kept config only: others still run
        if config == other:
            raise TypeError("bad argument")
        return default(q, k, v, cu, max_seqlen, scale, config)
    monkeypatch.setattr(va, "_triton", buggy)
    with pytest.raises(TypeError):
        va.vision_attention(*_qkv([300, 200])[:4], 300, 0.1)
