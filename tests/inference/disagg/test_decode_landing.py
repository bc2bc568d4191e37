"""The decode worker's landing thread: a TransferMeta that lands is put on
the inbox at once (no loop running, no poll), and the request then decodes;
DecodeDone carries the worker's own stage spans (KV wait, decode time).
Real worker (dummy:tiny engine, no serve loop), in-process fake transport."""
from __future__ import annotations

import queue
import time

import pytest

from inference.disagg import protocol as P
from inference.disagg.decode_worker import DecodeWorker
from inference.layouts import load_layout
from inference.transfer import TransferMeta
from inference.transfer.fake import FakeSender

SAMPLING = {"temperature": 0.0, "max_tokens": 3, "ignore_eos": True}


class Recorder:
    closed = False

    def __init__(self):
        self.sent: queue.Queue = queue.Queue()

    def send(self, msg):
        self.sent.put(msg)

    def reply_error(self, error, request_id=""):
        self.sent.put(P.Error(error=error, request_id=request_id))


@pytest.fixture(scope="module")
def worker():
    layout = load_layout("local-cpu-1p1d")
    layout.token = "test-token-landing"
    layout.transfer.transport, layout.transfer.fallback = "fake", None
    w = DecodeWorker("dummy:tiny", layout, 0, num_kv_blocks=16, max_model_len=128)
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
    sender.send(TransferMeta(request_id="a@0", src_block_ids=list(alloc.block_ids), dst_block_ids=list(alloc.block_ids),
                             num_tokens=8, first_token_id=5, mrope_position_delta=0, sampling_state=SAMPLING,
                             lease_expiry_unix_s=time.time() + 30))
    channel, meta = worker.inbox.get(timeout=5)  # put there by the landing thread alone
    assert channel is None and isinstance(meta, TransferMeta) and meta.request_id == "a@0"
    worker._dispatch(channel, meta)
    assert [r.request_id for r in worker.engine.scheduler.running] == ["a@0"]
    for _ in range(20):
        if not worker.engine.has_unfinished_requests():
            break
        worker.on_outputs(worker.engine.step())
    done = ch.sent.get(timeout=10)
    assert isinstance(done, P.DecodeDone) and done.token_ids[0] == 5 and len(done.token_ids) == 3
    assert 0 <= done.kv_wait_s < 5 and done.decode_s > 0
    assert not worker.allocated_at and not worker.landed_at  # nothing kept per finished request
