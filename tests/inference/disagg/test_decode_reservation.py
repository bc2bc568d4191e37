"""Decode side of pre-allocation: a reservation (upper-bound size, no token
known) is allocated, the meta that lands gives the first token and rope
delta, the blocks past its length are freed at landing, and a meta that
does not fit its reservation is refused. Real worker (dummy:tiny engine, no
serve loop), in-process fake transport."""
from __future__ import annotations

import time

import pytest

from inference.disagg import protocol as P
from inference.disagg.decode_worker import DecodeWorker
from inference.layouts import load_layout
from inference.transfer import TransferMeta
from inference.transfer.fake import FakeSender
from tests.inference.disagg.test_decode_landing import SAMPLING, Recorder


@pytest.fixture(scope="module")
def worker():
    layout = load_layout("local-cpu-1p1d")
    layout.token = "test-token-reservation"
    layout.transfer.transport, layout.transfer.fallback = "fake", None
    w = DecodeWorker("dummy:tiny", layout, 0, num_kv_blocks=16, max_model_len=128)
    yield w
    w.close()


def reserve(worker, ch, rid: str, tokens: int) -> P.Allocated:
    worker.handle(ch, P.DecodeRequest(request_id=rid, num_prompt_tokens=tokens, first_token=0, rope_delta=0,
                                      prompt_token_ids=[], sampling=SAMPLING, is_reservation=True))
    alloc = ch.sent.get(timeout=10)
    assert isinstance(alloc, P.Allocated) and alloc.ok
    return alloc


def land(worker, rid: str, dst: list[int], num_tokens: int, first: int, delta: int, sampling=SAMPLING):
    sender = FakeSender(worker.engine.kv_pool.clone())
    sender.connect(worker.transfer_address)
    sender.send(TransferMeta(request_id=rid, src_block_ids=dst, dst_block_ids=dst, num_tokens=num_tokens,
                             first_token_id=first, mrope_position_delta=delta, sampling_state=sampling,
                             lease_expiry_unix_s=time.time() + 30))
    channel, meta = worker.inbox.get(timeout=5)
    worker._dispatch(channel, meta)


def test_reservation_takes_token_and_length_from_the_meta(worker):
    ch, free0 = Recorder(), worker.engine.block_manager.num_free_blocks
    bs = worker.engine.block_manager.block_size
    alloc = reserve(worker, ch, "a@0", 3 * bs)
    assert len(alloc.block_ids) == 3 and alloc.num_free_blocks == free0 - 3
    land(worker, "a@0", alloc.block_ids.tolist()[:1], num_tokens=bs - 2, first=5, delta=-4)
    (req,) = worker.engine.scheduler.running
    assert req.request_id == "a@0" and req.num_computed_tokens == bs - 2 and req.rope_delta == -4
    assert req.block_ids == alloc.block_ids.tolist()[:1]  # the two unwritten blocks are free again
    assert worker.engine.block_manager.num_free_blocks == free0 - 1
    for _ in range(20):
        if not worker.engine.has_unfinished_requests():
            break
        worker.on_outputs(worker.engine.step())
    done = ch.sent.get(timeout=10)
    assert isinstance(done, P.DecodeDone) and done.token_ids[0] == 5 and len(done.token_ids) == 3
    assert worker.engine.block_manager.num_free_blocks == free0
    worker.engine.block_manager.check_invariants()


@pytest.mark.parametrize("case", ["not_leading", "too_long", "sampling"])
def test_meta_that_does_not_fit_its_reservation_is_refused(worker, case):
    ch, free0 = Recorder(), worker.engine.block_manager.num_free_blocks
    bs = worker.engine.block_manager.block_size
    ids = reserve(worker, ch, f"{case}@0", 2 * bs).block_ids.tolist()
    dst, n, sampling = ids[:1], bs, SAMPLING
    if case == "not_leading":
        dst = ids[1:]
    elif case == "too_long":
        dst, n = ids + [max(ids) + 1], 2 * bs + 1
    else:
        sampling = {**SAMPLING, "max_tokens": 9}
    land(worker, f"{case}@0", dst, num_tokens=n, first=5, delta=0, sampling=sampling)
    err = ch.sent.get(timeout=10)
    assert isinstance(err, P.Error) and err.request_id == f"{case}@0"
    assert not worker.engine.scheduler.running and f"{case}@0" not in worker.engine.awaiting_kv
    assert worker.engine.block_manager.num_free_blocks == free0  # all its blocks back
