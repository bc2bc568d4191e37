"""Scheduler alone (no model): token budget, chunked prefill, seats,
preemption by recompute, stop conditions."""
import torch

from inference.engine.block_manager import BlockManager
from inference.engine.request import Request, RequestStatus
from inference.engine.scheduler import Scheduler
from inference.processor import ProcessedPrompt
from inference.sampling import SamplingParams


def _req(rid, prompt_len, max_tokens=4, **kw):
    prompt = ProcessedPrompt(list(range(1, prompt_len + 1)), torch.zeros(3, prompt_len, dtype=torch.long), 0)
    return Request(rid, prompt, SamplingParams(max_tokens=max_tokens, **kw))


def _sched(num_blocks=16, block_size=4, seqs=8, budget=10):
    return Scheduler(BlockManager(num_blocks, block_size), seqs, budget, max_model_len=1000, eos_token_ids=[0])


def _run(s, out, token=5):
    return s.update(out, {i.request.request_id: token for i in out.scheduled if i.samples})


def test_chunked_prefill_respects_budget_then_decodes():
    s = _sched(budget=10)
    a, b = _req("a", 23), _req("b", 3)
    s.add(a)
    s.add(b)
    out = s.schedule()
    assert [(i.request.request_id, i.num_new_tokens, i.samples) for i in out.scheduled] == [("a", 10, False)]
    _run(s, out)
    out = s.schedule()
    assert [(i.request.request_id, i.num_new_tokens) for i in out.scheduled] == [("a", 10)]
    _run(s, out)
    out = s.schedule()  # last 3 of a, then b's whole prompt
    assert [(i.request.request_id, i.num_new_tokens, i.samples) for i in out.scheduled] == [("a", 3, True), ("b", 3, True)]
    _run(s, out)
    assert a.num_computed_tokens == 23 and a.output_token_ids == [5]
    out = s.schedule()
    assert [(i.request.request_id, i.num_new_tokens) for i in out.scheduled] == [("a", 1), ("b", 1)]


def test_max_num_seqs_limits_admission():
    s = _sched(seqs=2, budget=100)
    for rid in "abc":
        s.add(_req(rid, 2))
    assert [i.request.request_id for i in s.schedule().scheduled] == ["a", "b"]


def test_preemption_by_recompute_when_blocks_run_out():
    s = _sched(num_blocks=4, block_size=4, budget=100)
    a, b = _req("a", 8, max_tokens=6), _req("b", 7, max_tokens=6)
    s.add(a)
    s.add(b)
    _run(s, s.schedule())            # a: 2 blocks, b: 2 blocks, pool full
    out = s.schedule()               # a needs a 3rd block for token 9 -> b preempted
    assert [i.request.request_id for i in out.scheduled] == ["a"]
    assert b.status == RequestStatus.WAITING and b.num_computed_tokens == 0 and b.block_ids == []
    assert b.num_preemptions == 1 and s.waiting[0] is b and b.output_token_ids == [5]
    assert out.freed_request_ids == ["b"]
    _run(s, out)
    s.blocks.check_invariants()


def test_stop_token_eos_and_length():
    s = _sched(budget=100)
    stop, eos, length, ignore = (_req("s", 2, stop_token_ids=[7]), _req("e", 2), _req("l", 2, max_tokens=1),
                                 _req("i", 2, ignore_eos=True))
    for r in (stop, eos, length, ignore):
        s.add(r)
    out = s.schedule()
    finished = s.update(out, {"s": 7, "e": 0, "l": 9, "i": 0})
    assert [r.request_id for r in finished] == ["s", "e", "l"]
    assert [r.status for r in finished] == [RequestStatus.FINISHED_STOPPED] * 2 + [RequestStatus.FINISHED_LENGTH]
    assert ignore.status == RequestStatus.RUNNING
    assert s.blocks.num_free_blocks == 16 - 1


def test_prefill_first_keeps_decodes_out_of_prefill_steps():
    s = Scheduler(BlockManager(16, 4), 8, 10, max_model_len=1000, eos_token_ids=[0], prefill_first=True)
    a = _req("a", 3, max_tokens=8)
    s.add(a)
    _run(s, s.schedule())  # a prefilled, now decoding
    b = _req("b", 12, max_tokens=8)
    s.add(b)
    out = s.schedule()  # prefill-only: b's first chunk, no decode of a beside it
    assert [(i.request.request_id, i.num_new_tokens) for i in out.scheduled] == [("b", 10)]
    _run(s, out)
    out = s.schedule()  # b's last chunk still comes first
    assert [(i.request.request_id, i.num_new_tokens) for i in out.scheduled] == [("b", 2)]
    _run(s, out)
    out = s.schedule()  # nothing left to prefill: a decode-only step for both
    assert [(i.request.request_id, i.num_new_tokens) for i in out.scheduled] == [("a", 1), ("b", 1)]


def test_prefill_first_falls_back_to_decodes_when_no_seat_is_free():
    s = Scheduler(BlockManager(16, 4), 1, 10, max_model_len=1000, eos_token_ids=[0], prefill_first=True)
    s.add(_req("a", 3, max_tokens=8))
    _run(s, s.schedule())
    s.add(_req("b", 3))  # waits for a seat: the step must still decode a
    out = s.schedule()
    assert [(i.request.request_id, i.num_new_tokens) for i in out.scheduled] == [("a", 1)]


def test_full_pool_waits_for_a_pending_token_of_external_kv():
    """Async steps: a request whose KV came from outside (not recomputable)
    fills the pool; the next step is scheduled before its last token is known
    and would need one more block. It is skipped for that step (its token may
    stop it) instead of failing; once the token arrives and stops it, the pool
    is whole again."""
    s = _sched(num_blocks=2, block_size=4)
    prompt = ProcessedPrompt([1] * 7, torch.zeros(3, 7, dtype=torch.long), 0)
    r = Request("r", prompt, SamplingParams(max_tokens=8, stop_token_ids=[9]), recomputable=False)
    assert s.blocks.allocate(r.block_ids, 7)
    r.num_computed_tokens = 7
    r.append_token(4)  # first token from the prefill side
    r.status = RequestStatus.RUNNING
    s.running.append(r)
    out = s.schedule()  # feeds the first token: slot 7, the last of block 2
    assert [(i.request.request_id, i.num_new_tokens) for i in out.scheduled] == [("r", 1)]
    s.advance(out)  # launched; its token is pending
    ahead = s.schedule()  # would feed the pending token at slot 8: no block left, and r cannot be recomputed
    assert ahead.scheduled == [] and r in s.running
    finished = s.resolve(out, {"r": 9})  # the pending token is the stop token
    assert finished == [r] and r.output_token_ids == [4, 9] and s.blocks.num_free_blocks == 2
