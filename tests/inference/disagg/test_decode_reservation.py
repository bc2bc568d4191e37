"""Decode side of pre-allocation: a reservation (upper-bound size, no token
known) is allocated, the meta that lands gives the first token and rope
delta, the blocks past its length are freed at landing, and a meta that
does not fit its reservation is refused; sampling that reads the prompt
decodes on the meta's prompt ids exactly as the plain flow does on
DecodeRequest.prompt_token_ids, and a meta without them is refused. Real worker (dummy:tiny engine, no
serve loop), in-process fake transport."""
from __future__ import annotations

import time

import pytest

from inference.disagg import protocol as P
from inference.disagg.decode_worker import DecodeWorker
from inference.transfer import TransferMeta
from inference.transfer.fake import FakeSender
from tests.inference.disagg.doubles import Recorder, decode_until_done, make_worker
from tests.inference.disagg.test_decode_landing import SAMPLING


@pytest.fixture(scope="module")
def worker():
    w = make_worker(DecodeWorker, "test-token-reservation", fake_transfer=True)
    yield w
    w.close()


def reserve(worker, ch, rid: str, tokens: int, sampling=SAMPLING) -> P.Allocated:
    worker.handle(ch, P.DecodeRequest(request_id=rid, num_prompt_tokens=tokens, first_token=0, rope_delta=0,
                                      prompt_token_ids=[], sampling=sampling, is_reservation=True))
    alloc = ch.sent.get(timeout=10)
    assert isinstance(alloc, P.Allocated) and alloc.ok
    return alloc


def land(worker, rid: str, dst: list[int], num_tokens: int, first: int, delta: int, sampling=SAMPLING,
         prompt=None, src_pool=None, src=None):
    sender = FakeSender(worker.engine.kv_pool.clone() if src_pool is None else src_pool)
    sender.connect(worker.transfer_address)
    sender.send(TransferMeta(request_id=rid, src_block_ids=dst if src is None else src, dst_block_ids=dst,
                             num_tokens=num_tokens, first_token_id=first, mrope_position_delta=delta,
                             sampling_state=sampling, lease_expiry_unix_s=time.time() + 30, prompt_token_ids=prompt))
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
    done = decode_until_done(worker, ch)
    assert isinstance(done, P.DecodeDone) and done.token_ids[0] == 5 and len(done.token_ids) == 3
    assert worker.engine.block_manager.num_free_blocks == free0
    worker.engine.block_manager.check_invariants()


@pytest.mark.parametrize("case", ["not_leading", "too_long", "sampling", "first_token_id", "prompt_ids"])
def test_meta_that_does_not_fit_its_reservation_is_refused(worker, case):
    ch, free0 = Recorder(), worker.engine.block_manager.num_free_blocks
    bs = worker.engine.block_manager.block_size
    ids = reserve(worker, ch, f"{case}@0", 2 * bs).block_ids.tolist()
    dst, n, sampling, first, prompt = ids[:1], bs, SAMPLING, 5, None
    vocab = worker.engine.model_config.vocab_size
    if case == "not_leading":
        dst = ids[1:]
    elif case == "too_long":
        dst, n = ids + [max(ids) + 1], 2 * bs + 1
    elif case == "first_token_id":  # off the wire: outside the vocabulary it would index the embedding
        first = vocab
    elif case == "prompt_ids":  # ...and the logits, in penalties
        prompt = [1] * (n - 1) + [vocab + 7]
    else:
        sampling = {**SAMPLING, "max_tokens": 9}
    land(worker, f"{case}@0", dst, num_tokens=n, first=first, delta=0, sampling=sampling, prompt=prompt)
    err = ch.sent.get(timeout=10)
    assert isinstance(err, P.Error) and err.request_id == f"{case}@0"
    assert not worker.engine.scheduler.running and f"{case}@0" not in worker.engine.awaiting_kv
    assert worker.engine.block_manager.num_free_blocks == free0  # all its blocks back


PENALTY = {"temperature": 0.0, "max_tokens": 12, "ignore_eos": True, "repetition_penalty": 1.5,
           "no_repeat_ngram_size": 2}


def decode_all(worker, ch) -> P.DecodeDone:
    for _ in range(40):
        if not worker.engine.has_unfinished_requests():
            break
        worker.on_outputs(worker.engine.step())
    done = ch.sent.get(timeout=10)
    assert isinstance(done, P.DecodeDone), done
    return done


def test_penalty_reservation_decodes_like_the_plain_flow(worker):
    """Same KV, first token and prompt: the reservation (prompt from the meta) and the plain flow
    (prompt from the DecodeRequest) decode the same tokens, which differ from a decode on a zero
    placeholder prompt (the prompt holds the tokens that one produces, so the penalty bites)."""
    import torch
    bs, free0 = worker.engine.block_manager.block_size, worker.engine.block_manager.num_free_blocks
    n = bs + 5
    src_pool = torch.randn(worker.engine.kv_pool.shape, generator=torch.Generator().manual_seed(1)).to(
        worker.engine.kv_pool.dtype)
    ch = Recorder()

    def plain(rid: str, ids_of_prompt: list[int]) -> list[int]:
        worker.handle(ch, P.DecodeRequest(request_id=rid, num_prompt_tokens=n, first_token=5, rope_delta=0,
                                          prompt_token_ids=ids_of_prompt, sampling=PENALTY))
        dst = ch.sent.get(timeout=10).block_ids.tolist()
        land(worker, rid, dst, n, first=5, delta=0, sampling=PENALTY, src_pool=src_pool, src=[0, 1])
        return decode_all(worker, ch).token_ids

    zeros = plain("zeros@0", [0] * n)
    prompt = (zeros[1:] * n)[:n]
    ids = reserve(worker, ch, "pen@0", 3 * bs, sampling=PENALTY).block_ids.tolist()
    land(worker, "pen@0", ids[:2], n, first=5, delta=0, sampling=PENALTY, prompt=prompt, src_pool=src_pool, src=[0, 1])
    (req,) = worker.engine.scheduler.running
    assert req.token_ids[:n].tolist() == prompt and req.num_prompt_tokens == n
    fast = decode_all(worker, ch).token_ids
    assert fast == plain("plain@0", prompt)
    assert fast != zeros  # the prompt matters to this sampling: the check above can fail
    assert worker.engine.block_manager.num_free_blocks == free0
    worker.engine.block_manager.check_invariants()


def test_penalty_meta_without_prompt_is_refused(worker):
    ch, free0 = Recorder(), worker.engine.block_manager.num_free_blocks
    bs = worker.engine.block_manager.block_size
    ids = reserve(worker, ch, "old@0", 2 * bs, sampling=PENALTY).block_ids.tolist()
    land(worker, "old@0", ids[:1], num_tokens=bs, first=5, delta=0, sampling=PENALTY)  # an older prefill worker
    err = ch.sent.get(timeout=10)
    assert isinstance(err, P.Error) and err.request_id == "old@0"
    assert "old@0" not in worker.engine.awaiting_kv and not worker.engine.scheduler.running
    assert worker.engine.block_manager.num_free_blocks == free0
