"""The prefill worker's handoff off its loop thread: a TransferRequest is
claimed and sent, and TransferDone answered, with no loop running (it never
waits behind a prefill step); PrefillRequests are prepared on the prep thread
and reach the loop in arrival order with the other messages. The worker is
real (dummy:tiny engine, no serve loop); the transport is an acking fake."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from inference.disagg import protocol as P
from inference.disagg.prefill_job import PrefillJob
from inference.disagg.prefill_worker import Prepared, PrefillWorker
from inference.transfer import Transport
from inference.transfer.base import KVSender
from tests.inference.disagg.doubles import Recorder, make_worker


class AckingSender(KVSender):  # send_many: the base class's send() loop
    peer_spec = None  # no receiver pool: TransferDone counts 0 bytes

    def __init__(self, pool, config, on_release):
        self.on_release = on_release

    def connect(self, address):
        pass

    def send(self, meta):
        self.on_release(meta, "acked")

    def close(self):
        pass


@pytest.fixture(scope="module")
def worker():
    w = make_worker(PrefillWorker, "test-token-threads", Transport("acking", AckingSender, object, lambda config: None))
    yield w
    w.close()


def hold(worker, rid: str, lease_s: float = 30.0) -> None:
    out = SimpleNamespace(block_ids=[1, 2], num_computed_tokens=20, first_token=5, rope_delta=0)
    with worker._lock:
        worker.jobs[rid] = PrefillJob(sampling={"max_tokens": 4}, output=out, lease_expiry_unix_s=time.time() + lease_s)


def transfer(rid: str) -> P.TransferRequest:
    return P.TransferRequest(request_id=rid, dst_address="127.0.0.1:9", dst_block_ids=[7, 8])


def test_transfer_is_answered_without_the_loop(worker):
    ch = Recorder()
    hold(worker, "a@0")
    worker.receive(ch, transfer("a@0"))  # on this (connection) thread; no loop iteration follows
    done = ch.sent.get(timeout=10)
    assert isinstance(done, P.TransferDone) and done.ok and done.request_id == "a@0"
    assert ch.sent.empty()  # one TransferDone per send
    # the blocks are freed by the loop thread, through its inbox
    channel, item = worker.inbox.get(timeout=10)
    assert channel is None and item[1].request_id == "a@0" and "a@0" in worker.jobs
    worker._dispatch(channel, item)
    assert "a@0" not in worker.jobs
    worker.receive(ch, transfer("a@0"))  # sent and freed: nothing left to send
    again = ch.sent.get(timeout=10)
    assert isinstance(again, P.TransferDone) and not again.ok and "no KV held" in again.error


def test_expired_lease_cannot_be_claimed(worker):
    ch = Recorder()
    hold(worker, "b@0", lease_s=-1.0)
    worker.poll()
    worker.receive(ch, transfer("b@0"))
    done = ch.sent.get(timeout=10)
    assert not done.ok and "no KV held" in done.error


def test_prefill_requests_prepared_in_arrival_order(worker):
    ch = Recorder()
    cfg = worker.engine.model_config
    ids = [1, cfg.vision_start_token_id, cfg.image_token_id, cfg.vision_end_token_id, 2]
    good = P.PrefillRequest(request_id="c@0", prompt_token_ids=ids, sampling={"max_tokens": 4},
                            images=[bytes(56 * 56 * 3)], image_sizes=[[56, 56]])
    bad = P.PrefillRequest(request_id="d@0", prompt_token_ids=ids, sampling={"max_tokens": 4},
                           images=[bytes(10)], image_sizes=[[56, 56]])  # too few pixel bytes
    for msg in (good, P.Release(request_id="x@0"), bad):
        worker.receive(ch, msg)
    got = [worker.inbox.get(timeout=10)[1] for _ in range(3)]
    assert isinstance(got[0], Prepared) and got[0].request_id == "c@0" and not got[0].error
    assert got[0].prompt.token_ids.count(cfg.image_token_id) == 4  # 56x56 px: 2x2 merged patches
    assert 0 < got[0].received_s <= time.perf_counter()  # stamped on receipt: the admission wait starts there
    assert isinstance(got[1], P.Release)
    assert isinstance(got[2], Prepared) and got[2].error.startswith("ValueError")
    worker._dispatch(ch, got[2])  # a bad request is answered with PrefillFailed, on the loop thread
    failed = ch.sent.get(timeout=10)
    assert isinstance(failed, P.PrefillFailed) and failed.request_id == "d@0"


def early(rid: str, n_blocks: int, block_size: int) -> P.TransferRequest:
    return P.TransferRequest(request_id=rid, dst_address="127.0.0.1:9", dst_block_ids=list(range(7, 7 + n_blocks)),
                             dst_block_size=block_size)


def test_early_destination_pushed_when_the_prefill_ends(worker):
    ch = Recorder()
    worker.receive(ch, P.PrefillRequest(request_id="e@0", prompt_token_ids=list(range(3, 23)),
                                        sampling={"temperature": 0.0, "max_tokens": 4}))
    worker.receive(ch, early("e@0", 4, 8))  # 20 tokens need 3 of these 4 blocks of 8
    assert worker.jobs["e@0"].destination is not None
    worker._dispatch(*worker.inbox.get(timeout=10))
    while worker.engine.has_unfinished_requests():
        worker.on_outputs(worker.engine.step())
    done = ch.sent.get(timeout=10)
    assert isinstance(done, P.PrefillDone) and done.pushed and done.num_prompt_tokens == 20
    assert done.prompt_token_ids == []  # pushed: the KV's meta carries what the decode side needs
    sent = ch.sent.get(timeout=10)  # PrefillDone always first: the router moves to transfer on it
    assert isinstance(sent, P.TransferDone) and sent.ok and sent.request_id == "e@0"
    channel, item = worker.inbox.get(timeout=10)
    assert item[1].dst_block_ids == [7, 8, 9]  # only the blocks the KV fills are written
    worker._dispatch(channel, item)
    assert "e@0" not in worker.jobs


def test_early_destination_too_small_sends_nothing_and_keeps_the_kv(worker):
    ch = Recorder()
    worker.receive(ch, P.PrefillRequest(request_id="f@0", prompt_token_ids=list(range(3, 23)),
                                        sampling={"temperature": 0.0, "max_tokens": 4}))
    worker.receive(ch, early("f@0", 2, 8))
    worker._dispatch(*worker.inbox.get(timeout=10))
    while worker.engine.has_unfinished_requests():
        worker.on_outputs(worker.engine.step())
    done, refused = ch.sent.get(timeout=10), ch.sent.get(timeout=10)
    assert isinstance(done, P.PrefillDone) and not done.pushed
    assert done.prompt_token_ids == list(range(3, 23))  # the router's plain-flow DecodeRequest needs it
    assert isinstance(refused, P.TransferDone) and not refused.ok and refused.error.startswith("dst_too_small")
    job = worker.jobs["f@0"]
    assert job.is_held and not job.in_transfer and job.destination is None  # the plain flow can still send it
    worker.receive(ch, early("f@0", 3, 8))  # a late destination that fits: sent at once
    assert ch.sent.get(timeout=10).ok
    worker._dispatch(*worker.inbox.get(timeout=10))
    assert "f@0" not in worker.jobs


def test_release_drops_an_early_destination(worker):
    ch = Recorder()
    worker.receive(ch, P.PrefillRequest(request_id="g@0", prompt_token_ids=list(range(3, 23)),
                                        sampling={"temperature": 0.0, "max_tokens": 4}))
    worker.receive(ch, early("g@0", 4, 8))
    worker.receive(ch, P.Release(request_id="g@0"))
    for _ in range(2):
        worker._dispatch(*worker.inbox.get(timeout=10))
    while worker.engine.has_unfinished_requests():
        worker.on_outputs(worker.engine.step())
    assert "g@0" not in worker.jobs
    assert ch.sent.empty()  # nothing sent for a released request


def test_duplicate_prefill_request_of_a_held_request_leaves_it_held(worker):
    # a duplicate arriving after the first copy was held must not make it look unprefilled again: a
    # later TransferRequest for it (dst_block_size > 0) would be parked forever once the KV is gone
    hold(worker, "dup@0")
    job = worker.jobs["dup@0"]
    ch = Recorder()
    worker.receive(ch, P.PrefillRequest(request_id="dup@0", prompt_token_ids=[1, 2, 3], sampling={"max_tokens": 4}))
    worker._dispatch(*worker.inbox.get(timeout=10))  # the loop sees a duplicate of a held request
    assert worker.jobs["dup@0"] is job and job.is_held and ch.sent.empty()
    worker._dispatch(ch, P.Release(request_id="dup@0"))
    worker.receive(ch, early("dup@0", 4, 8))  # after the end: refused, not kept for a prefill to come
    refused = ch.sent.get(timeout=10)
    assert isinstance(refused, P.TransferDone) and not refused.ok and "no KV held" in refused.error
    assert "dup@0" not in worker.jobs
