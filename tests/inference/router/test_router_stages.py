"""Per-request stage timeline: the router stamps each stage mark on its clock
and exports p50/p99 of every span (and the workers' own spans)."""
from __future__ import annotations

import json

import pytest

from inference.disagg import protocol as P
from tests.inference.router.test_router import add, make, prefilled, submit


def test_stage_spans_follow_the_router_clock():
    router, net = make()
    add(router, "p0", "prefill")
    add(router, "d0", "decode")
    net.now = 1.0
    submit(router, "a")  # dispatched at once: queue span 0
    net.now = 1.5
    done = prefilled("a@0")
    done.admit_wait_s = 0.002
    router.on_worker_message("p0", done)  # prefill 0.5; DecodeRequest sent in the same pump
    net.now = 1.6
    router.on_worker_message("d0", P.Allocated(request_id="a@0", ok=True, block_ids=[3], num_free_blocks=9))
    net.now = 1.9
    router.on_worker_message("d0", P.DecodeDone(request_id="a@0", token_ids=[7, 8, 9], finish_reason="length",
                                                 kv_wait_s=0.25, decode_s=0.05))
    stages = json.loads(router.export_metrics())["stages_s"]
    assert stages["queue"]["p50"] == pytest.approx(0.0)
    assert stages["prefill"]["p50"] == pytest.approx(0.5)
    assert stages["await_decode"]["p50"] == pytest.approx(0.0)
    assert stages["alloc"]["p50"] == pytest.approx(0.1)
    assert stages["handoff"]["p50"] == pytest.approx(0.1)
    assert stages["decode"]["p50"] == pytest.approx(0.3)
    assert stages["tpot_window"]["p50"] == pytest.approx(0.4)
    assert stages["prefill_engine"]["p50"] == pytest.approx(0.01)  # PrefillDone.prefill_s
    assert stages["prefill_admit_wait"]["p50"] == pytest.approx(0.002)
    assert stages["decode_kv_wait"]["p50"] == pytest.approx(0.25)
    assert stages["decode_engine"]["p50"] == pytest.approx(0.05)
    assert "transfer" not in stages  # DecodeDone came before TransferDone: no sample
    assert all(v["n"] == 1 for v in stages.values())
    text = router.export_metrics("prometheus")
    assert 'docpipe_router_stage_seconds{stage="prefill",quantile="50"} 0.5' in text


def test_queue_span_and_unmeasured_worker_spans():
    router, net = make()
    add(router, "p0", "prefill")
    submit(router, "a")  # no decode worker yet: held at the router
    net.now = 2.0
    add(router, "d0", "decode")
    router.on_worker_message("p0", prefilled("a@0"))
    router.on_worker_message("d0", P.Allocated(request_id="a@0", ok=True, block_ids=[3], num_free_blocks=9))
    router.on_worker_message("p0", P.TransferDone(request_id="a@0", ok=True, num_bytes=10, transfer_s=0.001))
    net.now = 3.0
    router.on_worker_message("d0", P.DecodeDone(request_id="a@0", token_ids=[7, 8], finish_reason="length"))
    stages = json.loads(router.export_metrics())["stages_s"]
    assert stages["queue"]["p50"] == pytest.approx(2.0)
    assert stages["transfer"]["p50"] == pytest.approx(0.0)
    assert stages["decode"]["p50"] == pytest.approx(1.0)
    assert not {"prefill_admit_wait", "decode_kv_wait", "decode_engine"} & set(stages)  # -1: not measured


def test_prefill_rate_is_throughput_not_queued_latency():
    """Three 10-token prefills queued at once finish 0.1 s apart: the worker
    does 100 tokens/s, though the last one's own arrival-to-token time is 0.3 s."""
    router, net = make()
    add(router, "p0", "prefill")
    add(router, "d0", "decode")
    for rid in "abc":
        submit(router, rid)
    for i, rid in enumerate("abc", start=1):
        net.now = 0.1 * i
        msg = prefilled(f"{rid}@0")
        msg.prefill_s = net.now  # each waited behind the ones before it
        router.on_worker_message("p0", msg)
    assert router.slo.prefill_tokens_per_s == pytest.approx(100.0)
    assert router.slo.predicted_ttft_s(50, 1) == pytest.approx(0.5)


def test_the_slowest_requests_keep_their_spans():
    router, net = make()
    add(router, "p0", "prefill")
    add(router, "d0", "decode")
    for i, window in enumerate((0.2, 0.9, 0.4)):  # tpot = window / 2 (three tokens)
        rid = f"r{i}"
        net.now = 10.0 * i
        submit(router, rid)
        router.on_worker_message("p0", prefilled(f"{rid}@0"))
        router.on_worker_message("d0", P.Allocated(request_id=f"{rid}@0", ok=True, block_ids=[3], num_free_blocks=99))
        net.now += window
        router.on_worker_message("d0", P.DecodeDone(request_id=f"{rid}@0", token_ids=[7, 8, 9], finish_reason="length",
                                                     kv_wait_s=0.01 * i, decode_s=0.05, num_free_blocks=100,
                                                     decode_steps=2 + i, max_step_s=0.02))
    slowest = json.loads(router.export_metrics())["slowest_tpot"]
    assert [r["tpot_s"] for r in slowest] == pytest.approx([0.45, 0.2, 0.1])
    assert [r["tokens"] for r in slowest] == [3, 3, 3]
    assert slowest[0]["stages_s"]["tpot_window"] == pytest.approx(0.9)
    assert slowest[0]["stages_s"]["decode_kv_wait"] == pytest.approx(0.01)
    assert slowest[0]["decode_steps"] == 3 and slowest[0]["stages_s"]["decode_max_step"] == pytest.approx(0.02)
    assert slowest[0]["request_id"] != slowest[1]["request_id"]


def test_the_slowest_record_is_bounded_and_keeps_the_largest():
    from inference.router.metrics import SLOWEST, RouterMetrics

    metrics = RouterMetrics()
    tpots = [((i * 37) % 101) / 1000 for i in range(SLOWEST * 5)]
    for i, tpot in enumerate(tpots):
        metrics.observe_stages({}, None, f"r{i}", 4, tpot)
    metrics.observe_stages({}, None, "single-token", 1, None)  # no TPOT: not a candidate
    got = [r["tpot_s"] for r in metrics.snapshot()["slowest_tpot"]]
    assert got == sorted(tpots, reverse=True)[:SLOWEST]


def test_a_metrics_reset_empties_the_latency_windows_and_keeps_the_counters():
    from inference.router.metrics import RouterMetrics

    metrics = RouterMetrics()
    metrics.count("completed")
    metrics.ttft_s.append(0.5)
    metrics.tpot_s.append(0.01)
    metrics.observe_stages({"prefill_done": 1.0, "decode_done": 1.2}, None, "r", 3, 0.1)
    metrics.observe_transfer(100, 0.5)
    metrics.reset_latency()
    snap = metrics.snapshot()
    assert snap["stages_s"] == {} and snap["slowest_tpot"] == []
    assert snap["ttft_s"]["n"] == 0 and snap["tpot_s"]["n"] == 0
    assert snap["counters"] == {"completed": 1} and snap["transfer"]["bytes"] == 100
