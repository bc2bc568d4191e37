"""`docpipe bench pd` prints the router's stage latencies: one line per
stage present, in pipeline order, then the workers' own spans, in ms."""
from __future__ import annotations

from docpipe.bench.pd import stage_table


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
