"""The step timeline's gap attribution, on hand-made trace events (the GPU run writes real ones)."""
from docpipe.bench.step_trace import format_summary, summarize


def _x(cat, name, ts, dur, tid=1, corr=None):
    e = {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "tid": tid}
    if corr is not None:
        e["args"] = {"correlation": corr}
    return e


def _events():
    return [
        _x("user_annotation", "step:prefill", 0, 1000),
        _x("user_annotation", "phase:vision", 10, 480),
        _x("cpu_op", "aten::linear", 100, 60),
        _x("cpu_op", "aten::addmm", 110, 40),
        _x("cuda_runtime", "cudaLaunchKernel", 120, 5, corr=1),
        _x("kernel", "gemm", 130, 100, tid=7, corr=1),
        # launched while the gemm still runs: no gap of the host's making
        _x("cuda_runtime", "cudaLaunchKernel", 200, 5, corr=2),
        _x("kernel", "gelu", 230, 20, tid=7, corr=2),
        _x("user_annotation", "phase:lm", 500, 490),
        _x("cpu_op", "aten::mm", 600, 100),
        _x("cuda_runtime", "cudaLaunchKernel", 650, 5, corr=3),
        _x("kernel", "mm", 660, 50, tid=7, corr=3),
        _x("user_annotation", "step:decode", 1000, 200),
        _x("cuda_runtime", "cudaGraphLaunch", 1010, 30, corr=4),
        _x("kernel", "decode", 1040, 100, tid=7, corr=4),
    ]


def test_gaps_go_to_the_phase_and_op_that_launched_late():
    s = summarize(_events())
    # the device idles 250 -> 660 (lm launched at 650-655) and 710 -> 1040 (graph launched 1010-1040)
    assert s["host_bound_gap_ms_by_phase"] == {"prefill/lm": 0.41, "decode/other": 0.33}
    assert s["host_bound_gap_ms_by_op"]["prefill/lm/aten::mm"] == 0.41
    assert s["device_kernel_union_ms"] == (100 + 20 + 50 + 100) / 1e3
    assert s["window_ms"] == (1140 - 130) / 1e3
    prefill = s["per_step_kind"]["prefill"]
    assert prefill["kernels"] == 3 and prefill["host_launch_ms"] == 1.0
    assert prefill["device_span_ms"] == (710 - 130) / 1e3 and prefill["device_kernel_ms"] == 0.17
    assert s["phase_host_ms"] == {"vision": 0.48, "lm": 0.49}
    assert s["runtime_calls_ms"]["cudaLaunchKernel"]["n"] == 3


def test_a_gap_with_the_next_kernel_already_queued_is_not_the_hosts():
    events = _events()
    # the lm launch moves before the gelu ends: the device waited on something else (a copy, an event)
    events[10] = _x("cuda_runtime", "cudaLaunchKernel", 240, 5, corr=3)
    s = summarize(events)
    assert "prefill/lm" not in s["host_bound_gap_ms_by_phase"]
    assert s["other_gap_ms"]["launched before the device went idle"] == 0.41
    assert "prefill" in format_summary(s)


def test_a_step_counts_every_kernel_of_its_graph_launch_and_only_its_own_threads_launches():
    events = _events() + [
        _x("kernel", "decode_tail", 1150, 30, tid=7, corr=4),  # the same graph launch's second kernel
        _x("cuda_runtime", "cudaLaunchKernel", 1020, 5, tid=2, corr=9),  # another thread, inside the span
        _x("kernel", "other", 1200, 10, tid=8, corr=9),
    ]
    decode = summarize(events)["per_step_kind"]["decode"]
    assert decode["kernels"] == 2
    assert decode["device_span_ms"] == (1180 - 1040) / 1e3 and decode["device_kernel_ms"] == 0.13
