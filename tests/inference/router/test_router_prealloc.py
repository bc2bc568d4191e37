"""Router pre-allocation (prealloc.py) with fake workers: the reservation
asked at dispatch, the destination given before the prefill ends, and every
fallback (no room, late answer, too small, retry) without loss or double use
of blocks."""
from __future__ import annotations

from inference.disagg import protocol as P
from tests.inference.router.test_router import add, make, prefilled, submit


def setup(**kw):
    router, net = make(**kw)
    add(router, "p0", "prefill")
    add(router, "d0", "decode", block_size=4)
    return router, net


def test_reservation_at_dispatch_then_push_at_prefill_end():
    router, net = setup()
    submit(router, "r", n_tokens=10)
    (pre,) = net.take("p0", P.PrefillRequest)
    (res,) = net.take("d0", P.DecodeRequest)
    assert res.is_reservation and res.num_prompt_tokens == 10 and res.request_id == pre.request_id == "r@0"
    router.on_worker_message("d0", P.Allocated(request_id="r@0", ok=True, block_ids=[5, 6, 7], num_free_blocks=97))
    (tr,) = net.take("p0", P.TransferRequest)
    assert tr.dst_block_ids == [5, 6, 7] and tr.dst_block_size == 4 and tr.dst_address == "d0:1"
    router.on_worker_message("p0", P.PrefillDone(**{**vars(prefilled("r@0")), "pushed": True}))
    assert router.jobs["r"].stage == "transfer" and not net.take(kind=P.DecodeRequest)
    router.on_worker_message("p0", P.TransferDone(request_id="r@0", ok=True, num_bytes=10, transfer_s=0.001))
    router.on_worker_message("d0", P.DecodeDone(request_id="r@0", token_ids=[7, 8, 9], finish_reason="length"))
    (result,) = net.take("client", P.Result)
    assert result.token_ids == [7, 8, 9] and result.num_retries == 0
    snap = router.metrics.snapshot()
    assert snap["counters"]["pushed_at_prefill"] == 1 and snap["stages_s"]["handoff"]["p99"] == 0.0


def test_answer_after_the_prefill_falls_back_to_the_plain_transfer():
    router, net = setup()
    submit(router, "r", n_tokens=10)
    net.take()
    router.on_worker_message("p0", prefilled("r@0"))  # before Allocated: the router waits for it
    assert router.jobs["r"].stage == "alloc" and not net.take(kind=P.DecodeRequest)
    router.on_worker_message("d0", P.Allocated(request_id="r@0", ok=True, block_ids=[5, 6, 7], num_free_blocks=97))
    (tr,) = net.take("p0", P.TransferRequest)
    assert tr.dst_block_size == 4 and router.jobs["r"].stage == "transfer"


def test_reservation_too_small_is_freed_and_a_fresh_allocation_asked():
    router, net = setup()
    submit(router, "r", n_tokens=10)
    net.take()
    router.on_worker_message("p0", prefilled("r@0", n=30))  # 30 tokens need 8 blocks of 4
    router.on_worker_message("d0", P.Allocated(request_id="r@0", ok=True, block_ids=[5, 6, 7], num_free_blocks=97))
    (rel,) = net.take("d0", P.Release)
    assert rel.request_id == "r@0" and not rel.transfer_started  # never named to the prefill worker
    (dec,) = net.take("d0", P.DecodeRequest)
    assert not dec.is_reservation and dec.num_prompt_tokens == 30 and dec.first_token == 7
    assert not net.take(kind=P.TransferRequest)


def test_destination_refused_as_too_small_after_prefill():
    router, net = setup()
    submit(router, "r", n_tokens=10)
    router.on_worker_message("d0", P.Allocated(request_id="r@0", ok=True, block_ids=[5, 6, 7], num_free_blocks=97))
    net.take()
    router.on_worker_message("p0", prefilled("r@0", n=30))
    assert router.jobs["r"].stage == "transfer"
    router.on_worker_message("p0", P.TransferDone(request_id="r@0", ok=False, error="dst_too_small: r@0"))
    (rel,) = net.take("d0", P.Release)
    assert not rel.transfer_started
    (dec,) = net.take("d0", P.DecodeRequest)
    assert not dec.is_reservation and router.metrics.counters["retries"] == 0


def test_no_room_at_dispatch_keeps_the_plain_flow():
    router, net = setup()
    submit(router, "r", n_tokens=10)
    router.on_worker_message("d0", P.Allocated(request_id="r@0", ok=False, error="no_room: full", num_free_blocks=0))
    assert not net.take(kind=P.TransferRequest) and router.jobs["r"].decode == ""
    router.on_worker_message("d0", P.Load(num_free_blocks=50))
    router.on_worker_message("p0", prefilled("r@0"))
    decs = net.take("d0", P.DecodeRequest)
    assert [d.is_reservation for d in decs] == [True, False]


def test_retry_after_the_destination_was_given_quarantines_decode_blocks():
    router, net = setup()
    add(router, "p1", "prefill")
    submit(router, "r", n_tokens=10)
    pre = [t for t, m in net.sent if isinstance(m, P.PrefillRequest)][0]
    router.on_worker_message("d0", P.Allocated(request_id="r@0", ok=True, block_ids=[5, 6, 7], num_free_blocks=97))
    net.take()
    router.worker_lost(pre)  # the prefill worker may have begun writing into 5, 6, 7
    (rel,) = net.take("d0", P.Release)
    assert rel.request_id == "r@0" and rel.transfer_started
    assert [m.request_id for m in net.take(kind=P.PrefillRequest)] == ["r@1"]


PENALTY = {"max_tokens": 8, "no_repeat_ngram_size": 100, "repetition_penalty": 1.2}


def test_penalties_that_read_the_prompt_get_a_reservation():
    router, net = setup()
    router.submit("client", P.Submit(request_id="r", prompt_token_ids=list(range(10)), sampling=PENALTY))
    (pre,) = net.take(kind=P.PrefillRequest)
    (res,) = net.take("d0", P.DecodeRequest)
    assert res.is_reservation and res.sampling == PENALTY and res.request_id == pre.request_id


def test_landing_refused_by_decode_retries_in_the_plain_flow():
    """A meta the decode worker refuses (no prompt ids from an older prefill worker): the request is
    retried without a reservation, completes once, and both sides get a Release for the refused attempt."""
    router, net = setup()
    router.submit("client", P.Submit(request_id="r", prompt_token_ids=list(range(10)), sampling=PENALTY))
    router.on_worker_message("d0", P.Allocated(request_id="r@0", ok=True, block_ids=[5, 6, 7], num_free_blocks=97))
    router.on_worker_message("p0", P.PrefillDone(**{**vars(prefilled("r@0")), "pushed": True}))
    router.on_worker_message("p0", P.TransferDone(request_id="r@0", ok=True, num_bytes=10, transfer_s=0.001))
    net.take()
    router.on_worker_message("d0", P.Error(error="transfer metadata does not match the decode request",
                                           request_id="r@0"))
    rels = net.take(kind=P.Release)
    assert sorted(r.request_id for r in rels) == ["r@0", "r@0"] and all(r.transfer_started for r in rels)
    (pre,) = net.take("p0", P.PrefillRequest)
    assert pre.request_id == "r@1" and not net.take(kind=P.DecodeRequest)  # no reservation this time
    assert router.metrics.counters["reservation_fallbacks"] == 1
    router.on_worker_message("p0", prefilled("r@1"))
    (dec,) = net.take("d0", P.DecodeRequest)
    assert not dec.is_reservation and dec.prompt_token_ids == list(range(10))
    router.on_worker_message("d0", P.Allocated(request_id="r@1", ok=True, block_ids=[1, 2, 3], num_free_blocks=97))
    (tr,) = net.take("p0", P.TransferRequest)
    assert tr.dst_block_size == 0
    router.on_worker_message("p0", P.TransferDone(request_id="r@1", ok=True, num_bytes=10, transfer_s=0.001))
    router.on_worker_message("d0", P.DecodeDone(request_id="r@1", token_ids=[7, 8], finish_reason="length"))
    (result,) = net.take("client", P.Result)
    assert result.token_ids == [7, 8] and result.num_retries == 1 and not router.jobs


def test_reservation_counts_against_decode_room_and_blocks():
    router, net = setup()
    router.workers["d0"].num_free_blocks = 5  # room for one 10-token reservation (3 blocks + 1)
    submit(router, "a", n_tokens=10)
    submit(router, "b", n_tokens=10)
    assert [m.request_id for m in net.take(kind=P.DecodeRequest)] == ["a@0"]
