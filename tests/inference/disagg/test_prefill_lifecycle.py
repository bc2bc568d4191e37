"""Every way a prefill request ends leaves nothing of it behind: after a
pushed send that is acked, one that fails, a lease expiry, a Release while
prefilling (engine abort), a Release while the send is in flight, a bad
request and a failed preparation, the worker holds no job, the engine no
request, and every KV block is free again. Each request's replies are the
ones the protocol states. The worker is real (dummy:tiny engine; the test
plays its loop thread); the transport is a fake whose sends can be held."""
from __future__ import annotations

import queue
import threading
import time

import pytest

from inference.disagg import protocol as P
from inference.disagg.prefill_worker import Prepared, PrefillWorker
from inference.transfer import Transport, TransferError
from inference.transfer.base import KVSender
from tests.inference.disagg.doubles import Recorder, make_worker

PROMPT = list(range(3, 23))  # 20 tokens


class GatedSender(KVSender):  # send_many: the base class's send() loop
    """Acks each send once `gate` is open; a request id starting with "fail" fails on bad ids."""

    peer_spec = None  # no receiver pool: TransferDone counts 0 bytes
    gate = threading.Event()

    def __init__(self, pool, config, on_release):
        self.on_release = on_release

    def connect(self, address):
        pass

    def send(self, meta):
        if meta.request_id.startswith("fail"):
            raise TransferError(f"{meta.request_id}: destination block ids outside the pool")
        assert GatedSender.gate.wait(10), "the test never opened the gate"
        self.on_release(meta, "acked")

    def close(self):
        pass


@pytest.fixture(scope="module")
def worker():
    GatedSender.gate.set()
    w = make_worker(PrefillWorker, "test-token-lifecycle", Transport("gated", GatedSender, object, lambda config: None))
    yield w
    GatedSender.gate.set()
    w.close()


def prefill(rid: str, **kw) -> P.PrefillRequest:
    return P.PrefillRequest(request_id=rid, prompt_token_ids=PROMPT, sampling={"temperature": 0.0, "max_tokens": 4},
                            **kw)


def early(rid: str) -> P.TransferRequest:  # a reservation of 4 blocks of 8 tokens: room for the 20
    return P.TransferRequest(request_id=rid, dst_address="127.0.0.1:9", dst_block_ids=[7, 8, 9, 10],
                             dst_block_size=8)


def settle(worker, idle_s: float = 0.3) -> None:
    """The loop thread's work until there is none: inbox, leases, engine steps."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            worker._dispatch(*worker.inbox.get(timeout=idle_s))
            continue
        except queue.Empty:
            pass
        worker.poll()
        if not worker.engine.has_unfinished_requests():
            return
        worker.on_outputs(worker.engine.step())
    raise AssertionError("the worker did not settle in 20 s")


def replies(ch: Recorder) -> dict[str, list]:
    got: dict[str, list] = {}
    while not ch.sent.empty():
        msg = ch.sent.get()
        got.setdefault(msg.request_id, []).append(msg)
    return got


def kinds(msgs: list) -> list[str]:
    return [type(m).__name__ + ("" if getattr(m, "ok", True) else "(failed)") for m in msgs]


def test_every_end_leaves_no_state(worker):
    ch = Recorder()
    free_blocks = worker.engine.block_manager.num_free_blocks
    for rid in ("ack@0", "fail@0", "lease@0"):
        worker.receive(ch, prefill(rid))
    for rid in ("ack@0", "fail@0"):
        worker.receive(ch, early(rid))  # pushed when the prefill ends
    worker.receive(ch, prefill("abort@0"))
    worker.receive(ch, P.Release(request_id="abort@0"))  # behind it in the queue: admitted, then aborted
    worker.receive(ch, prefill("bad@0", images=[bytes(10)], image_sizes=[[56, 56]]))  # too few pixel bytes
    settle(worker)
    assert set(worker.jobs) == {"lease@0"}  # held, waiting for a TransferRequest
    with worker._lock:
        worker.jobs["lease@0"].lease_expiry_unix_s = time.time() - 1.0
    settle(worker)  # poll() ends it
    worker.receive(ch, P.TransferRequest(request_id="lease@0", dst_address="127.0.0.1:9", dst_block_ids=[7, 8]))

    got = replies(ch)
    assert kinds(got["ack@0"]) == ["PrefillDone", "TransferDone"] and got["ack@0"][0].pushed
    assert kinds(got["fail@0"]) == ["PrefillDone", "TransferDone(failed)"]
    assert got["fail@0"][1].error.startswith("failed: TransferError")
    assert kinds(got["lease@0"]) == ["PrefillDone", "TransferDone(failed)"] and not got["lease@0"][0].pushed
    assert "no KV held" in got["lease@0"][1].error
    assert kinds(got["bad@0"]) == ["PrefillFailed"]
    assert "abort@0" not in got  # a released request hears nothing
    assert worker.jobs == {} and worker.engine.scheduler.held == {}
    assert not worker.engine.has_unfinished_requests()
    assert worker.engine.block_manager.num_free_blocks == free_blocks


def test_release_during_the_send_waits_for_its_end(worker):
    ch = Recorder()
    free_blocks = worker.engine.block_manager.num_free_blocks
    worker.receive(ch, prefill("sending@0"))
    settle(worker)
    GatedSender.gate.clear()  # the send starts and waits for the ack
    try:
        for _ in range(2):  # the second finds it claimed
            worker.receive(ch, P.TransferRequest(request_id="sending@0", dst_address="127.0.0.1:9",
                                                 dst_block_ids=[7, 8]))
        worker.receive(ch, P.Release(request_id="sending@0"))
        worker._dispatch(*worker.inbox.get(timeout=10))  # the Release: the sender may still read the blocks
        assert worker.jobs["sending@0"].in_transfer and "sending@0" in worker.engine.scheduler.held
    finally:
        GatedSender.gate.set()
    settle(worker)  # the send's end frees them
    got = replies(ch)["sending@0"]
    assert kinds(got) == ["PrefillDone", "TransferDone(failed)", "TransferDone"]
    assert got[1].error == "sending@0: already in transfer"
    assert worker.jobs == {} and worker.engine.block_manager.num_free_blocks == free_blocks


def test_failed_preparation_ends_the_request(worker):
    # an unexpected failure (an Error reply) ends it like a bad request: a reservation sent for it
    # afterwards is refused at once instead of waiting for a prefill that will never come
    ch = Recorder()
    msg = prefill("broken@0")
    worker.receive(ch, msg)
    worker.inbox.get(timeout=10)  # its preparation, replaced by one that failed
    worker._dispatch(ch, Prepared(msg, exception=RuntimeError("processor crashed"), received_s=time.perf_counter()))
    error = ch.sent.get(timeout=10)
    assert isinstance(error, P.Error) and "processor crashed" in error.error and error.request_id == "broken@0"
    assert "broken@0" not in worker.jobs
    worker.receive(ch, early("broken@0"))
    refused = ch.sent.get(timeout=10)
    assert isinstance(refused, P.TransferDone) and not refused.ok and "no KV held" in refused.error
