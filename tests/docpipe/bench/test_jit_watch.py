"""jit_watch: Triton cache misses counted and timed per kernel; hooks restored."""
import pytest

from docpipe.bench.jit_watch import JitMisses, jit_watch


class _Fn:
    def __init__(self, name):
        self.name = name


def test_misses_are_counted_and_timed_per_kernel():
    m = JitMisses()
    assert m.on_miss(key=("a", 1), repr="k1[num_warps=4](x: *bf16)", fn=_Fn("k1"), compile={}) is False
    m.on_built(key=("a", 1), repr="", fn=_Fn("k1"))
    m.on_miss(key=("a", 2), repr="k1[num_warps=8](x: *bf16)", fn=_Fn("k1"))
    m.on_miss(key=("b", 1), repr="k2[...]", fn=_Fn("k2"))  # never built: counted, no time
    m.on_built(key=("a", 2))
    r = m.report()
    assert r["misses"] == 3
    assert [(k["kernel"], k["misses"]) for k in r["kernels"]] == [("k1", 2), ("k2", 1)]
    assert r["kernels"][0]["first"] == "k1[num_warps=4](x: *bf16)"
    assert r["kernels"][0]["seconds"] >= 0 and r["kernels"][1]["seconds"] == 0
    assert r["seconds"] == pytest.approx(r["kernels"][0]["seconds"])


def test_disabled_yields_none():
    with jit_watch(False) as m:
        assert m is None


def test_hooks_installed_and_restored():
    knobs = pytest.importorskip("triton").knobs  # CI installs no Triton (GPU-only dependency)
    before = knobs.runtime.jit_cache_hook
    with jit_watch() as m:
        assert knobs.runtime.jit_cache_hook == m.on_miss
        assert knobs.runtime.jit_post_compile_hook == m.on_built
    assert knobs.runtime.jit_cache_hook is before
