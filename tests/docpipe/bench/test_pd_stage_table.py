"""`docpipe bench pd` prints the router's stage latencies: one line per
stage present, in pipeline order, then the workers' own spans, in ms."""
from __future__ import annotations

from docpipe.bench.pd import stage_table, slowest_table


def test_stage_table_orders_and_converts():
    stages = {"decode_engine": {"p50": 0.5, "p99": 1.0, "n": 3}, "queue": {"p50": 0.001, "p99": 0.0025, "n": 3},
              "alloc": {"p50": 0.010, "p99": 0.030, "n": 3}}
    lines = stage_table(stages).splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["queue", "alloc", "decode_engine"]
    assert lines[2].split()[1:] == ["10.0", "30.0", "3"]
    assert len(stage_table({}).splitlines()) == 1  # header only: no stage measured


def test_prealloc_line_counts_each_path():
    from docpipe.bench.pd import prealloc_line

    line = prealloc_line({"reservations": 5, "pushed_at_prefill": 3, "pushed_late": 1})
    assert line == "pre-allocation: reservations 5, pushed at prefill 3, pushed late 1, reservation fallbacks 0"


def test_per_kind_splits_by_the_request_id_suffix():
    from docpipe.bench.pd import kind_table, per_kind

    results = {"p0-0-layout": {"token_ids": [1] * 300, "ttft_s": 0.1, "tpot_s": 0.004},
               "p0-1-title": {"token_ids": [1] * 10, "ttft_s": 0.2, "tpot_s": 0.010},
               "p1-1-title": {"token_ids": [1] * 14, "ttft_s": 0.3, "tpot_s": 0.002}}
    kinds = per_kind(results)
    assert list(kinds) == ["layout", "title"]
    assert kinds["title"]["n"] == 2 and kinds["title"]["tokens_mean"] == 12
    assert kinds["title"]["tpot_s"]["p99"] > kinds["title"]["tpot_s"]["p50"] >= 0.002
    table = kind_table({"per_kind": {"monolithic": kinds, "disaggregated": {"title": kinds["title"]}}})
    t = kinds["title"]["tpot_s"]
    assert table.splitlines()[2].split() == ["title", f"{t['p50'] * 1e3:.1f}", f"{t['p99'] * 1e3:.1f}",
                                             f"{t['p50'] * 1e3:.1f}", f"{t['p99'] * 1e3:.1f}", "12"]
    assert table.splitlines()[1].split()[3:5] == ["0.0", "0.0"]  # no disaggregated layout requests


def test_slowest_table_shows_each_requests_spans_in_ms():
    slowest = [{"request_id": "p3-9-title@0", "tokens": 9, "tpot_s": 0.0164,
                "stages_s": {"transfer": 0.0057, "tpot_window": 0.131, "decode_engine": 0.02,
                             "decode_max_step": 0.0123, "kv_wire": 0.00042}, "decode_steps": 8},
               {"request_id": "p1-2-text@0", "tokens": 50, "tpot_s": 0.004, "stages_s": {}}]
    lines = slowest_table(slowest).splitlines()
    assert len(lines) == 3 and "tpot_window" in lines[0]
    assert "p3-9-title@0" in lines[1] and " 16.4 " in lines[1] and " 131.00" in lines[1] and " 5.70 " in lines[1]
    assert lines[1].split()[3] == "8" and " 12.30 " in lines[1]  # decode steps, longest step
    header = lines[0].split()
    assert lines[1].split()[header.index("kv_wire") - 3] == "0.42"  # a sub-ms hop keeps its digits
    assert lines[2].split()[-10:] == ["-"] * 10  # steps and spans not measured show as '-'


def test_monolithic_side_captures_decode_graphs_at_start_like_the_decode_worker():
    """The monolithic baseline runs with the prefill role's settings but as a whole engine: its decode and
    sampler graphs are captured at start, as the PD decode worker's are (a fair TPOT comparison)."""
    from docpipe.bench.pd import monolithic_config
    from inference.disagg.worker import engine_config
    from inference.layouts import load_layout

    layout = load_layout("gpu-1p1d-mps")
    assert engine_config("dummy:tiny", layout.role("prefill")).precapture_decode is False
    mono = monolithic_config("dummy:tiny", layout, {})
    assert mono.precapture_decode is True and mono.precapture_graphs is True
    assert mono.device == layout.role("prefill").device and mono.dtype == layout.role("prefill").dtype
    assert monolithic_config("dummy:tiny", layout, {"precapture_decode": False}).precapture_decode is False
