"""Router state machine with fake workers: worker choice, SLO queueing and
rejection, retries on faults, idempotent completion, metrics export."""
from __future__ import annotations

import pytest

from inference.disagg import protocol as P
from inference.layouts import SloSpec
from inference.router.policy import WorkerState
from inference.router.router import Router


class Net:
    """Collects what the router sends, per target; a fake clock."""

    def __init__(self):
        self.sent: list[tuple[object, object]] = []
        self.now = 0.0

    def send(self, target, msg) -> None:
        self.sent.append((target, msg))

    def take(self, target=None, kind=None) -> list:
        out = [m for t, m in self.sent if (target is None or t == target) and (kind is None or isinstance(m, kind))]
        self.sent = [(t, m) for t, m in self.sent if not ((target is None or t == target) and (kind is None or isinstance(m, kind)))]
        return out


def make(slo=None, **kw) -> tuple[Router, Net]:
    net = Net()
    router = Router(slo or SloSpec(ttft_ms=1000, tpot_ms=100, max_queue=8), net.send, clock=lambda: net.now, **kw)
    return router, net


def add(router: Router, name: str, role: str, **kw) -> None:
    router.add_worker(WorkerState(name=name, role=role, channel=name, transfer_address=f"{name}:1",
                                  num_free_blocks=kw.pop("free", 100), **kw))


def submit(router: Router, rid: str, n_tokens: int = 10, max_tokens: int = 8) -> None:
    router.submit("client", P.Submit(request_id=rid, prompt_token_ids=list(range(n_tokens)),
                                     sampling={"temperature": 0.0, "max_tokens": max_tokens}))


def prefilled(wid: str, n: int = 10) -> P.PrefillDone:
    return P.PrefillDone(request_id=wid, num_prompt_tokens=n, first_token=7, rope_delta=-3,
                         prompt_token_ids=list(range(n)), prefill_s=0.01)


def run_to_done(router: Router, net: Net, rid: str, attempt: int = 0, tokens=(7, 8, 9)) -> None:
    wid = f"{rid}@{attempt}"
    (pre,) = [t for t, m in net.sent if isinstance(m, P.PrefillRequest) and m.request_id == wid]
    router.on_worker_message(pre, prefilled(wid))
    (dec,) = [t for t, m in net.sent if isinstance(m, P.DecodeRequest) and m.request_id == wid]
    router.on_worker_message(dec, P.Allocated(request_id=wid, ok=True, block_ids=[3, 4], num_free_blocks=90))
    router.on_worker_message(pre, P.TransferDone(request_id=wid, ok=True, num_bytes=1 << 20, transfer_s=0.001))
    router.on_worker_message(dec, P.DecodeDone(request_id=wid, token_ids=list(tokens), finish_reason="length"))


def test_full_lifecycle_and_metrics():
    router, net = make()
    add(router, "p0", "prefill")
    add(router, "d0", "decode")
    submit(router, "a")
    net.now = 0.5
    run_to_done(router, net, "a")
    (res,) = net.take("client", P.Result)
    assert res.token_ids == [7, 8, 9] and res.ttft_s == pytest.approx(0.5) and res.num_retries == 0
    (tr,) = net.take("p0", P.TransferRequest)
    assert tr.dst_address == "d0:1" and tr.dst_block_ids == [3, 4]
    text = router.export_metrics("prometheus")
    assert "docpipe_router_completed_total 1" in text
    assert 'docpipe_router_ttft_seconds{quantile="50"} 0.5' in text
    assert router.metrics.transfer_gb_per_s == pytest.approx((1 << 20) / 0.001 / 1e9)


def test_prefill_choice_by_queued_tokens_and_decode_by_free_blocks():
    router, net = make(preallocate=False)  # the plain flow: decode chosen at PrefillDone
    add(router, "p0", "prefill")
    add(router, "p1", "prefill")
    add(router, "d0", "decode", free=20)
    add(router, "d1", "decode", free=50)
    submit(router, "big", n_tokens=500)
    submit(router, "small", n_tokens=10)
    submit(router, "third", n_tokens=10)
    targets = {m.request_id: t for t, m in net.sent if isinstance(m, P.PrefillRequest)}
    assert targets["big@0"] != targets["small@0"]
    assert targets["third@0"] == targets["small@0"]  # 20 queued tokens < 500
    router.on_worker_message(targets["small@0"], prefilled("small@0"))
    (dec,) = [t for t, m in net.sent if isinstance(m, P.DecodeRequest)]
    assert dec == "d1"


def test_decode_without_room_waits_then_allocates():
    router, net = make()
    add(router, "p0", "prefill")
    add(router, "d0", "decode", free=1)  # 10 prompt tokens need 1 block of 16 + room for the next token
    submit(router, "a", n_tokens=20)
    router.on_worker_message("p0", prefilled("a@0", n=20))
    assert not net.take("d0", P.DecodeRequest) and router.jobs["a"].stage == "await_decode"
    router.on_worker_message("d0", P.Load(num_free_blocks=10))
    assert net.take("d0", P.DecodeRequest)


def test_tpot_gate_queues_prefill_until_decode_speeds_up():
    router, net = make(SloSpec(ttft_ms=1000, tpot_ms=50, max_queue=8))
    add(router, "p0", "prefill")
    add(router, "d0", "decode", num_running=4, step_s=0.048)  # one more: 0.048 * 5/4 = 60 ms > 50 ms
    submit(router, "a")
    assert not net.take("p0", P.PrefillRequest) and list(router.queue) == ["a"]
    router.on_worker_message("d0", P.Load(num_free_blocks=100, num_running=4, step_s=0.030))
    (pre,) = net.take("p0", P.PrefillRequest)
    assert pre.request_id == "a@0"


def test_bounded_queue_and_slo_rejection():
    router, net = make(SloSpec(ttft_ms=100, tpot_ms=50, max_queue=2), slo_policy="reject")
    add(router, "p0", "prefill")  # no decode worker yet: everything queues
    for rid in "abc":
        submit(router, rid)
    (rej,) = net.take("client", P.Rejected)
    assert (rej.request_id, rej.reason) == ("c", "queue_full")
    router.queue.remove("b")  # room again: "a" (10 tokens) stays ahead
    router.jobs.pop("b")
    router.slo.prefill_tokens_per_s = 100.0  # measured: 10 ahead + 10 own tokens -> 0.2 s > 100 ms
    submit(router, "d")
    (rej,) = net.take("client", P.Rejected)
    assert rej.reason == "slo"
    router.slo.prefill_tokens_per_s = 0.0
    submit(router, "e")
    assert list(router.queue) == ["a", "e"]
    net.now = 0.2  # waited past the TTFT target without a decode worker: rejected, not held forever
    router.tick()
    assert sorted((m.request_id, m.reason) for m in net.take("client", P.Rejected)) == [("a", "slo"), ("e", "slo")]
    assert not router.jobs and not router.queue


def test_transfer_timeout_releases_both_sides_and_retries():
    router, net = make(transfer_timeout_s=1.0)
    add(router, "p0", "prefill")
    add(router, "d0", "decode")
    submit(router, "a")
    router.on_worker_message("p0", prefilled("a@0"))
    router.on_worker_message("d0", P.Allocated(request_id="a@0", ok=True, block_ids=[1]))
    net.take()
    net.now = 2.0
    router.tick()
    assert [m.request_id for m in net.take("p0", P.Release)] == ["a@0"]
    assert [m.request_id for m in net.take("d0", P.Release)] == ["a@0"]
    assert [m.request_id for t, m in net.sent if isinstance(m, P.PrefillRequest)] == ["a@1"]
    # the old attempt's late replies are ignored; its KV is released
    router.on_worker_message("p0", P.TransferDone(request_id="a@0", ok=True))
    router.on_worker_message("d0", P.DecodeDone(request_id="a@0", token_ids=[1], finish_reason="length", num_free_blocks=99))
    assert not net.take("client")
    run_to_done(router, net, "a", attempt=1)
    router.on_worker_message("d0", P.DecodeDone(request_id="a@1", token_ids=[7, 8, 9], finish_reason="length"))
    (res,) = net.take("client")  # exactly one result despite the duplicate DecodeDone
    assert res.num_retries == 1 and res.token_ids == [7, 8, 9]


def test_lost_decode_worker_reprefills_on_another():
    router, net = make()
    add(router, "p0", "prefill")
    add(router, "d0", "decode", free=100)
    add(router, "d1", "decode", free=10)
    submit(router, "a")
    router.on_worker_message("p0", prefilled("a@0"))
    router.on_worker_message("d0", P.Allocated(request_id="a@0", ok=True, block_ids=[1]))
    router.on_worker_message("p0", P.TransferDone(request_id="a@0", ok=True))
    net.take()
    router.worker_lost("d0")
    assert [m.request_id for m in net.take("p0", P.PrefillRequest)] == ["a@1"]
    router.on_worker_message("p0", prefilled("a@1"))
    assert net.take("d1", P.DecodeRequest)


def test_non_retryable_prefill_failure_rejects_and_retries_are_bounded():
    router, net = make(max_retries=1)
    add(router, "p0", "prefill")
    add(router, "d0", "decode")
    submit(router, "bad")
    router.on_worker_message("p0", P.PrefillFailed(request_id="bad@0", error="ValueError: too long"))
    (rej,) = net.take("client", P.Rejected)
    assert rej.reason.startswith("bad_request")
    submit(router, "flaky")
    router.on_worker_message("p0", P.Error(request_id="flaky@0", error="boom"))
    router.on_worker_message("p0", P.Error(request_id="flaky@1", error="boom"))
    (rej,) = net.take("client", P.Rejected)
    assert rej.reason.startswith("failed")


def test_prometheus_text_labels_workers_and_reasons():
    router, net = make(SloSpec(ttft_ms=1000, tpot_ms=100, max_queue=0))
    add(router, "p0", "prefill")
    add(router, "d0", "decode", free=42)
    submit(router, "a")  # queue bound 0: rejected
    text = router.export_metrics("prometheus")
    assert 'docpipe_router_rejected_total{reason="queue_full"} 1' in text
    assert 'docpipe_worker_free_blocks{worker="d0"} 42' in text
    assert text.count("# TYPE docpipe_worker_free_blocks gauge") == 1
    import json
    assert json.loads(router.export_metrics())["workers"]["d0"]["free_blocks"] == 42



def test_finished_ids_are_remembered_within_a_bounded_window(monkeypatch):
    import inference.router.router as R

    monkeypatch.setattr(R, "DONE_MEMORY", 2)
    router, net = make()
    add(router, "p0", "prefill")
    add(router, "d0", "decode")
    for rid in ("a", "b", "c"):
        submit(router, rid)
        run_to_done(router, net, rid)
        router.on_worker_message("d0", P.Load(num_free_blocks=100))  # the decode worker's blocks are free again
        net.take()
    assert list(router.done) == ["b", "c"]
    submit(router, "c")  # still remembered: refused as a duplicate
    assert [m.reason for m in net.take("client", P.Rejected)] == ["duplicate"]


def test_gone_client_requests_are_aborted_on_both_sides_at_every_stage():
    router, net = make(preallocate=False)  # the plain flow's stages (test_router_prealloc: reservations)
    add(router, "p0", "prefill")
    add(router, "d0", "decode")
    for rid in ("in_prefill", "in_alloc", "in_transfer", "in_decode"):
        router.submit("gone", P.Submit(request_id=rid, prompt_token_ids=list(range(10)), sampling={"max_tokens": 8}))
    router.on_worker_message("d0", P.Load(num_free_blocks=100, num_running=4, step_s=0.5))  # TPOT gate shuts
    router.submit("gone", P.Submit(request_id="queued", prompt_token_ids=[1, 2], sampling={"max_tokens": 8}))
    submit(router, "kept")  # another client's request, queued behind
    for rid in ("in_alloc", "in_transfer", "in_decode"):
        router.on_worker_message("p0", prefilled(f"{rid}@0"))
    router.on_worker_message("d0", P.Load(num_free_blocks=100))  # the gate opens again
    for rid in ("in_transfer", "in_decode"):
        router.on_worker_message("d0", P.Allocated(request_id=f"{rid}@0", ok=True, block_ids=[1], num_free_blocks=90))
    router.on_worker_message("p0", P.TransferDone(request_id="in_decode@0", ok=True))
    stages = {rid: job.stage for rid, job in router.jobs.items()}
    assert stages == {"in_prefill": "prefill", "in_alloc": "alloc", "in_transfer": "transfer", "in_decode": "decode",
                      "queued": "prefill", "kept": "prefill"}  # the gate opened: both were sent to prefill
    net.take()

    router.client_gone("gone")
    assert list(router.jobs) == ["kept"] and not router.queue and not router.await_decode
    releases = {(t, m.request_id, m.transfer_started) for t, m in net.sent if isinstance(m, P.Release)}
    assert releases == {("p0", "in_prefill@0", False), ("p0", "queued@0", False),
                        ("p0", "in_alloc@0", False), ("d0", "in_alloc@0", False),
                        ("p0", "in_transfer@0", True), ("d0", "in_transfer@0", True),
                        ("p0", "in_decode@0", True), ("d0", "in_decode@0", True)}
    assert not net.take("gone") and router.metrics.counters["aborted_client_gone"] == 5
    assert router.workers["p0"].inflight == {"kept"} and not router.workers["d0"].inflight
    assert router.workers["p0"].queued_tokens == router.jobs["kept"].est_tokens
    net.take()
    # late replies of the aborted requests are stale: released, never delivered
    router.on_worker_message("d0", P.Allocated(request_id="in_alloc@0", ok=True, block_ids=[2], num_free_blocks=90))
    router.on_worker_message("p0", prefilled("in_prefill@0"))
    router.on_worker_message("d0", P.DecodeDone(request_id="in_decode@0", token_ids=[1, 2], finish_reason="length",
                                                num_free_blocks=99))
    assert {(t, m.request_id, m.transfer_started) for t, m in net.sent if isinstance(m, P.Release)} == {
        ("d0", "in_alloc@0", False), ("p0", "in_prefill@0", True)}
    assert not net.take("gone")
    router.client_gone("gone")  # idempotent
    router.on_worker_message("p0", prefilled("kept@0"))
    router.on_worker_message("d0", P.Allocated(request_id="kept@0", ok=True, block_ids=[3], num_free_blocks=90))
    router.on_worker_message("p0", P.TransferDone(request_id="kept@0", ok=True))
    router.on_worker_message("d0", P.DecodeDone(request_id="kept@0", token_ids=[7, 8], finish_reason="length"))
    assert [m.request_id for m in net.take("client", P.Result)] == ["kept"]
