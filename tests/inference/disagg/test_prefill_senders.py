"""The prefill worker's transfer connections: a sender is reused after a
send that failed on the request alone (bad ids), closed (never leaked) when
its link breaks or its connect fails, and replaced once its receiver is gone.
The worker is real (dummy:tiny engine, no serve loop); the transport is a
recording fake, driven through the worker's own sender thread."""
from __future__ import annotations

import threading
import time

import pytest

from inference.disagg.prefill_worker import PrefillWorker
from inference.transfer import Transport, TransferError, TransferMeta
from inference.transfer.base import KVSender
from tests.inference.disagg.doubles import make_worker


class RecordingSender(KVSender):  # send_many: the base class's send() loop
    """Sender double: `plan` says what each send does (ok | bad_ids | broken)."""

    peer_spec = None  # no receiver pool: TransferDone counts 0 bytes

    made: list["RecordingSender"] = []
    plan: list[str] = []
    refuse_connect = False

    def __init__(self, pool, config, on_release):
        self.on_release, self.closed, self.address, self.sent = on_release, False, None, []
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._closed.wait, daemon=True)  # "ack reader": lives until close
        RecordingSender.made.append(self)

    def connect(self, address):
        self.address = address
        if RecordingSender.refuse_connect:
            raise ConnectionRefusedError(f"{address} refused")
        self._reader.start()

    def send(self, meta):
        what = RecordingSender.plan.pop(0)
        if what == "bad_ids":
            raise TransferError(f"{meta.request_id}: destination block ids [999] outside the pool")
        if what == "broken":
            raise BrokenPipeError("peer reset the connection mid-frame")
        self.sent.append(meta.request_id)
        self.on_release(meta, "acked")

    def is_alive(self):
        return not self._closed.is_set() and self._reader.is_alive()

    def close(self):
        self.closed = True
        self._closed.set()

    def receiver_gone(self):
        """What a real sender's reader does when the receiver hangs up."""
        self._closed.set()
        self._reader.join()
        self._closed.clear()


@pytest.fixture(scope="module")
def worker():
    w = make_worker(PrefillWorker, "test-token-senders", Transport("recording", RecordingSender, object, lambda config: None))
    yield w
    w.close()


@pytest.fixture(autouse=True)
def fresh(worker):
    RecordingSender.made, RecordingSender.plan, RecordingSender.refuse_connect = [], [], False
    for address in list(worker.senders):
        del worker.senders[address]
    getattr(worker, "_send_failures", {}).clear()
    while not worker.inbox.empty():
        worker.inbox.get()


def send(worker, rid: str, what: str, address: str = "127.0.0.1:1") -> str:
    """Queue one transfer through the worker's sender thread; its release status."""
    RecordingSender.plan.append(what)
    worker._sends.put((address, TransferMeta(request_id=rid, src_block_ids=[0], dst_block_ids=[0], num_tokens=4,
                                             first_token_id=1, mrope_position_delta=0, sampling_state={},
                                             lease_expiry_unix_s=time.time() + 30)))
    _, (_, meta, status) = worker.inbox.get(timeout=10)
    assert meta.request_id == rid
    return status


def test_request_error_keeps_the_healthy_connection(worker):
    assert send(worker, "a@0", "ok") == "acked"
    assert send(worker, "b@0", "bad_ids").startswith("failed: TransferError")
    assert send(worker, "c@0", "ok") == "acked"
    (sender,) = RecordingSender.made  # one connection for all three: reused, not leaked
    assert sender.sent == ["a@0", "c@0"] and not sender.closed and worker.senders["127.0.0.1:1"] is sender


def test_broken_link_is_closed_and_replaced(worker):
    assert send(worker, "a@0", "ok") == "acked"
    assert send(worker, "b@0", "broken").startswith("failed: BrokenPipeError")
    first = RecordingSender.made[0]
    assert first.closed and "127.0.0.1:1" not in worker.senders
    assert send(worker, "c@0", "ok") == "acked"
    assert len(RecordingSender.made) == 2 and RecordingSender.made[1].sent == ["c@0"]


def test_repeated_request_errors_replace_the_connection(worker):
    send(worker, "a@0", "bad_ids")
    send(worker, "b@0", "bad_ids")  # two in a row: the link itself is suspect
    assert RecordingSender.made[0].closed and not worker.senders


def test_receiver_gone_means_reconnect(worker):
    assert send(worker, "a@0", "ok") == "acked"
    first = RecordingSender.made[0]
    first.receiver_gone()
    assert send(worker, "b@0", "ok") == "acked"
    assert first.closed and len(RecordingSender.made) == 2 and RecordingSender.made[1].sent == ["b@0"]


def test_failed_connect_is_closed(worker):
    RecordingSender.refuse_connect = True
    RecordingSender.plan.append("ok")  # never reached
    status = send(worker, "a@0", "ok")
    assert status.startswith("failed: ConnectionRefusedError")
    assert RecordingSender.made[0].closed and not worker.senders


class BatchingSender(RecordingSender):
    """A sender that moves groups (batches_sends): records each send_many group; the first one
    waits on `gate`, so the sends queued meanwhile pile up behind it."""

    batches_sends = True
    gate = threading.Event()
    waiting = threading.Event()  # set once a group waits at the closed gate
    groups: list[list[str]] = []

    def send_many(self, metas):
        if RecordingSender.plan[:1] == ["explode"]:  # a fault of the sender itself, outside any one send
            RecordingSender.plan.pop(0)
            raise RuntimeError("sender fault outside any send")
        if not BatchingSender.gate.is_set():
            BatchingSender.waiting.set()
        BatchingSender.gate.wait(10)
        BatchingSender.groups.append([m.request_id for m in metas])
        return super().send_many(metas)


def test_queued_sends_go_to_a_batching_sender_as_groups_per_address(worker):
    recording = worker.transport
    worker.transport = Transport("batching", BatchingSender, object, lambda config: None)
    BatchingSender.gate.set()
    try:
        _groups_after_a_wait(worker)
    finally:
        BatchingSender.gate.set()
        worker.transport = recording


def _groups_after_a_wait(worker):
    assert send(worker, "warm@0", "ok") == "acked"  # connects to the first address
    BatchingSender.gate.clear()
    BatchingSender.waiting.clear()
    BatchingSender.groups = []
    a, b = "127.0.0.1:1", "127.0.0.1:2"
    order = [("a0", a), ("a1", a), ("a2", a), ("b0", b), ("a3", a)]
    RecordingSender.plan.extend(["ok", "ok", "bad_ids", "ok", "ok"])
    for k, (rid, address) in enumerate(order):
        worker._sends.put((address, TransferMeta(request_id=rid, src_block_ids=[0], dst_block_ids=[0], num_tokens=4,
                                                 first_token_id=1, mrope_position_delta=0, sampling_state={},
                                                 lease_expiry_unix_s=time.time() + 30)))
        if k == 0:  # a0 is taken alone and waits at the gate; the rest queue behind it
            assert BatchingSender.waiting.wait(10)
    BatchingSender.gate.set()
    released = {}
    for _ in order:
        _, (_, meta, status) = worker.inbox.get(timeout=10)
        released[meta.request_id] = status
    # in queue order; consecutive sends to one address form one group, another address ends it
    assert BatchingSender.groups == [["a0"], ["a1", "a2"], ["b0"], ["a3"]]
    assert released.pop("a2").startswith("failed: TransferError")  # its own error only
    assert set(released.values()) == {"acked"}


def test_the_first_sends_to_a_new_address_form_a_group(worker):
    """Grouping follows the transport, not a connected sender: the sends queued for an address
    never connected before go as one group too."""
    recording = worker.transport
    worker.transport = Transport("batching", BatchingSender, object, lambda config: None)
    BatchingSender.gate.set()
    try:
        assert send(worker, "warm@0", "ok") == "acked"  # connects to the first address
        BatchingSender.gate.clear()
        BatchingSender.waiting.clear()
        BatchingSender.groups = []
        a, b = "127.0.0.1:1", "127.0.0.1:2"
        order = [("a0", a), ("b0", b), ("b1", b), ("b2", b)]
        RecordingSender.plan.extend(["ok"] * len(order))
        for k, (rid, address) in enumerate(order):
            worker._sends.put((address, TransferMeta(request_id=rid, src_block_ids=[0], dst_block_ids=[0], num_tokens=4,
                                                     first_token_id=1, mrope_position_delta=0, sampling_state={},
                                                     lease_expiry_unix_s=time.time() + 30)))
            if k == 0:
                assert BatchingSender.waiting.wait(10)
        BatchingSender.gate.set()
        statuses = [worker.inbox.get(timeout=10)[1][2] for _ in order]
        assert set(statuses) == {"acked"}
        assert BatchingSender.groups == [["a0"], ["b0", "b1", "b2"]]
    finally:
        BatchingSender.gate.set()
        worker.transport = recording


def test_a_fault_outside_any_send_fails_the_group_and_the_thread_lives_on(worker):
    recording = worker.transport
    worker.transport = Transport("batching", BatchingSender, object, lambda config: None)
    BatchingSender.gate.set()
    try:
        assert send(worker, "a@0", "ok") == "acked"  # connects
        assert send(worker, "b@0", "explode").startswith("failed: RuntimeError")
        assert RecordingSender.made[0].closed  # not a request's error: the connection is replaced
        assert send(worker, "c@0", "ok") == "acked"  # the sender thread still runs
    finally:
        worker.transport = recording
