"""The decode worker's landing thread: a TransferMeta that lands is put on
the inbox at once (no loop running, no poll), and the request then decodes;
DecodeDone carries the worker's own stage spans (KV wait, decode time).
Real worker (dummy:tiny engine, no serve loop), in-process fake transport."""
from __future__ import annotations

import time

import pytest

from inference.disagg import protocol as P
from inference.disagg.decode_worker import DecodeWorker
from inference.transfer import TransferMeta
from inference.transfer.fake import FakeSender
from tests.inference.disagg.doubles import Recorder, decode_until_done, make_worker

SAMPLING = {"temperature": 0.0, "max_tokens": 3, "ignore_eos": True}


@pytest.fixture(scope="module")
def worker():
    w = make_worker(DecodeWorker, "test-token-landing", fake_transfer=True)
    yield w
    w.close()


def test_landed_kv_reaches_the_inbox_and_decodes(worker):
    ch = Recorder()
    worker.handle(ch, P.DecodeRequest(request_id="a@0", num_prompt_tokens=8, first_token=5, rope_delta=0,
                                      prompt_token_ids=list(range(8)), sampling=SAMPLING))
    alloc = ch.sent.get(timeout=10)
    assert isinstance(alloc, P.Allocated) and alloc.ok
    sender = FakeSender(worker.engine.kv_pool.clone())
    sender.connect(worker.transfer_address)
    sent = TransferMeta(request_id="a@0", src_block_ids=list(alloc.block_ids), dst_block_ids=list(alloc.block_ids),
                        num_tokens=8, first_token_id=5, mrope_position_delta=0, sampling_state=SAMPLING,
                        lease_expiry_unix_s=time.time() + 30)
    now = time.time()
    sent.hops.update(received=now - 0.003, landed=now - 0.001)  # what a real receiver stamps
    sender.send(sent)
    channel, meta = worker.inbox.get(timeout=5)  # put there by the landing thread alone
    assert channel is None and isinstance(meta, TransferMeta) and meta.request_id == "a@0"
    worker._dispatch(channel, meta)
    assert [r.request_id for r in worker.engine.scheduler.running] == ["a@0"]
    done = decode_until_done(worker, ch)
    assert isinstance(done, P.DecodeDone) and done.token_ids[0] == 5 and len(done.token_ids) == 3
    assert 0 <= done.kv_wait_s < 5 and done.decode_s > 0
    # two decode steps after landing give tokens 2 and 3 (a step more when outputs come a step late)
    assert done.decode_steps in (2, 3) and 0 < done.max_step_s <= done.decode_s
    assert done.kv_hops_s["kv_copy_wait"] == pytest.approx(0.002, abs=1e-5) and done.kv_hops_s["kv_inbox"] >= 0.001
    assert not worker.hops  # nothing kept per finished request
    assert not worker.allocated_at and not worker.landed_at  # nothing kept per finished request


def test_a_release_after_landing_keeps_nothing_of_the_request(worker):
    """Released by the router after its KV landed: the engine aborts it and hands out no output, so the
    worker's per-request spans (KV wait, landing, hops) go at the release."""
    ch = Recorder()
    worker.handle(ch, P.DecodeRequest(request_id="b@0", num_prompt_tokens=8, first_token=5, rope_delta=0,
                                      prompt_token_ids=list(range(8)), sampling=SAMPLING))
    alloc = ch.sent.get(timeout=10)
    sender = FakeSender(worker.engine.kv_pool.clone())
    sender.connect(worker.transfer_address)
    meta = TransferMeta(request_id="b@0", src_block_ids=list(alloc.block_ids), dst_block_ids=list(alloc.block_ids),
                        num_tokens=8, first_token_id=5, mrope_position_delta=0, sampling_state=SAMPLING,
                        lease_expiry_unix_s=time.time() + 30)
    meta.hops["landed"] = time.time()
    sender.send(meta)
    worker._dispatch(*worker.inbox.get(timeout=5))
    assert "b@0" in worker.landed_at and "b@0" in worker.hops
    worker.handle(ch, P.Release(request_id="b@0", transfer_started=True))
    for _ in range(3):
        worker.run_step()
    assert "b@0" not in worker.landed_at and "b@0" not in worker.hops and "b@0" not in worker.allocated_at
    assert not worker.engine.has_unfinished_requests()
