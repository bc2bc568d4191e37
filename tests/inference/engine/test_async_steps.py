"""Async engine steps (step N+1 launched before step N's tokens reach the
host) against the synchronous loop (async_scheduling=False): same tokens,
same finish reasons and bookkeeping, each finished request out of step()
exactly once, no KV block leaked. Stop conditions are taken from a sync run's
own outputs so they fire at different steps of one batch."""
import pytest
import torch

from inference import LLM, SamplingParams

PROMPTS = [list(range(10 + 3 * i, 20 + 5 * i)) for i in range(6)]
MAX_STEPS = 400


def _engine(async_steps: bool, **kw):
    cfg = dict(dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=64, max_model_len=96, mode="eager")
    cfg.update(kw)
    return LLM("dummy:tiny", async_scheduling=async_steps, **cfg).engine


def _drain(engine, outs=None) -> dict:
    """Step until done; every finished request comes out once."""
    outs = {} if outs is None else outs
    for _ in range(MAX_STEPS):
        if not engine.has_unfinished_requests():
            break
        for o in engine.step():
            assert o.request_id not in outs, f"{o.request_id} came out of step() twice"
            assert o.ttft_s >= 0 and o.tpot_s >= 0
            outs[o.request_id] = o
    else:
        pytest.fail("engine still has work after MAX_STEPS steps")
    return outs


def _assert_empty(engine, held: int = 0):
    bm = engine.block_manager
    bm.check_invariants()
    assert not engine.has_unfinished_requests()
    assert bm.num_free_blocks == bm.num_blocks - held


def _run(async_steps: bool, params, prompts=PROMPTS, eos=None, **kw):
    engine = _engine(async_steps, **kw)
    if eos is not None:
        engine.scheduler.eos_token_ids = set(eos)
    for i, p in enumerate(prompts):
        engine.add_request(str(i), {"prompt_token_ids": p}, params[i] if isinstance(params, list) else params)
    outs = _drain(engine)
    _assert_empty(engine)
    assert sorted(outs) == [str(i) for i in range(len(prompts))]
    return engine, outs


def _same(sync_outs: dict, async_outs: dict, logits: bool = False):
    assert sync_outs.keys() == async_outs.keys()
    for rid, want in sync_outs.items():
        got = async_outs[rid]
        assert (got.token_ids, got.finish_reason, got.num_prompt_tokens) == \
            (want.token_ids, want.finish_reason, want.num_prompt_tokens), rid
        assert got.num_computed_tokens == want.num_computed_tokens, rid
        if logits:
            assert (got.logits is None) == (want.logits is None), rid
            if want.logits is not None:
                assert got.logits.shape == (len(want.token_ids), want.logits.shape[1]), rid
                assert (got.logits - want.logits).abs().max() < 1e-4, rid


@pytest.fixture(scope="module")
def free_run():
    """Sync greedy run without stops: the token streams the stop tests cut."""
    _, outs = _run(False, SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))
    return {rid: o.token_ids for rid, o in outs.items()}


@pytest.mark.parametrize("policy", ["mixed", "prefill_first"])
def test_stop_tokens_at_different_steps_with_logits(free_run, policy):
    """Request i stops on its (i % 5)-th token; every other one returns logits;
    prompts are chunked (24-token steps)."""
    params = [SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[free_run[str(i)][i % 5]],
                             return_logits=i % 2 == 0) for i in range(len(PROMPTS))]
    kw = dict(scheduling=policy, max_num_batched_tokens=24)
    _, want = _run(False, params, **kw)
    assert sorted({len(o.token_ids) for o in want.values()}) == [1, 2, 3, 4, 5]
    _, got = _run(True, params, **kw)
    _same(want, got, logits=True)


def test_eos_at_different_steps(free_run):
    """The model's EOS (set to tokens the streams produce) with ignore_eos False,
    beside ignore_eos requests that must run through it."""
    eos = {free_run["0"][3], free_run["2"][1]}
    params = [SamplingParams(temperature=0, max_tokens=12, ignore_eos=i % 3 == 1) for i in range(len(PROMPTS))]
    _, want = _run(False, params, eos=eos)
    assert {o.finish_reason for o in want.values()} == {"stop", "length"}
    _, got = _run(True, params, eos=eos)
    _same(want, got)


@pytest.mark.parametrize("max_tokens", [1, 2])
def test_short_outputs_beside_long_ones(max_tokens):
    params = [SamplingParams(temperature=0, max_tokens=max_tokens if i % 2 else 9, ignore_eos=True)
              for i in range(len(PROMPTS))]
    _, want = _run(False, params)
    _, got = _run(True, params)
    _same(want, got)
    assert [len(o.token_ids) for _, o in sorted(got.items())] == [9, max_tokens] * 3


def test_abort_while_its_step_is_in_flight():
    """Aborted requests (one mid-prompt, one decoding with a pending token,
    one penalised so it holds a sampler history slot) never come out; the
    others keep their sync tokens; aborting the rest empties the engine at
    once, and it serves a new request afterwards."""
    params = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)
    penalised = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True, presence_penalty=0.5,
                               no_repeat_ngram_size=3)
    prompts = PROMPTS[:4] + [list(range(1, 60))]
    _, want = _run(False, [params, penalised, params, params, params], prompts=prompts, max_num_batched_tokens=48)
    engine = _engine(True, max_num_batched_tokens=48)
    for i, p in enumerate(prompts):
        engine.add_request(str(i), {"prompt_token_ids": p}, penalised if i == 1 else params)
    outs = {}
    for _ in range(2):
        outs.update({o.request_id: o for o in engine.step()})
    assert engine.scheduler.running[-1].request_id == "4" and engine.scheduler.running[-1].num_computed_tokens < 59
    assert engine.scheduler.running[1].num_pending == 1  # its token of the launched step
    for rid in ("1", "4"):
        engine.abort(rid)
    assert engine.has_unfinished_requests()
    for _ in range(3):
        for o in engine.step():
            assert o.request_id not in outs
            outs[o.request_id] = o
    assert "1" not in engine.runner.sampler.history.slot_of
    engine.abort("0")
    engine.abort("2")
    engine.abort("3")
    assert not engine.has_unfinished_requests()
    _assert_empty(engine)
    assert not outs  # none had finished before its abort
    engine.add_request("new", {"prompt_token_ids": prompts[2]}, params)
    got = _drain(engine)
    _assert_empty(engine)
    assert list(got) == ["new"] and got["new"].token_ids == want["2"].token_ids


def test_preemption_with_pending_tokens_and_device_history():
    """A pool too small for the batch: requests (penalties, n-gram bans, seeded
    draws) are preempted and recomputed while their tokens are pending; their
    device history is reloaded and the tokens are the sync ones."""
    params = [SamplingParams(temperature=0, max_tokens=16, ignore_eos=True),
              SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, repetition_penalty=1.3,
                             frequency_penalty=0.2, no_repeat_ngram_size=2),
              SamplingParams(temperature=0.9, top_k=20, max_tokens=16, ignore_eos=True, seed=7,
                             presence_penalty=0.4),
              SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, no_repeat_ngram_size=1),
              SamplingParams(temperature=1.0, top_p=0.8, max_tokens=16, ignore_eos=True, seed=3,
                             no_repeat_ngram_size=3),
              SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, presence_penalty=1.0)]
    kw = dict(num_kv_blocks=20, max_model_len=64)
    _, want = _run(False, params, **kw)
    _, got = _run(True, params, **kw)
    assert sum(o.num_preemptions for o in got.values()) > 0
    _same(want, got)
    _, plain = _run(True, params, num_kv_blocks=64, max_model_len=64)  # no preemption at all
    assert sum(o.num_preemptions for o in plain.values()) == 0
    assert {r: o.token_ids for r, o in plain.items()} == {r: o.token_ids for r, o in got.items()}


def test_roles_on_one_async_engine():
    """Prefill role (keep_kv, max_tokens=1) then decode role (add_prefilled_request,
    KV copied from the held blocks, release, kv_ready) on the same async engine
    while another request decodes: tokens equal a sync colocated run; a first
    token that already stops finishes in kv_ready and never again in step()."""
    prompt = list(range(30, 47))
    decode_params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True, presence_penalty=0.5,
                                   no_repeat_ngram_size=2)
    _, want = _run(False, decode_params, prompts=[prompt])
    engine = _engine(True)
    engine.add_request("other", {"prompt_token_ids": PROMPTS[1]}, SamplingParams(temperature=0, max_tokens=40,
                                                                                  ignore_eos=True))
    engine.step()
    engine.add_request("p", {"prompt_token_ids": prompt}, SamplingParams(temperature=0, max_tokens=1), keep_kv=True)
    outs = {}
    while "p" not in outs:
        outs.update({o.request_id: o for o in engine.step()})
    first = outs["p"]
    assert first.token_ids == want["0"].token_ids[:1]
    assert first.num_computed_tokens == len(prompt)
    assert len(first.block_ids) == engine.block_manager.blocks_for(len(prompt))
    assert engine.scheduler.running and engine._inflight is not None  # "other" still decoding, a step in flight
    dst = engine.add_prefilled_request("d", len(prompt), first.first_token, first.rope_delta, decode_params,
                                       prompt_token_ids=prompt)
    engine.kv_pool[dst] = engine.kv_pool[first.block_ids]
    engine.release("p")
    assert engine.kv_ready("d") == []
    stop_now = SamplingParams(temperature=0, max_tokens=8, stop_token_ids=[first.first_token])
    engine.add_prefilled_request("e", len(prompt), first.first_token, first.rope_delta, stop_now)
    (done,) = engine.kv_ready("e")
    assert (done.token_ids, done.finish_reason) == ([first.first_token], "stop")
    outs = {"e": done}
    _drain(engine, outs)
    _assert_empty(engine)
    assert sorted(outs) == ["d", "e", "other"]
    assert outs["d"].token_ids == want["0"].token_ids


def test_prefill_hold_never_deadlocks():
    """A frozen clock and a hold no arrival can fill: a request that arrives
    while nothing runs is admitted at once; one held behind a decode is
    admitted when that decode ends (also while its last token is pending)."""
    params = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    results = {}
    for async_steps in (False, True):
        engine = _engine(async_steps, scheduling="prefill_first", prefill_hold_tokens=10**6, prefill_hold_s=10**6)
        engine.scheduler.clock = lambda: 0.0
        a = engine.add_request("a", {"prompt_token_ids": PROMPTS[0]}, params)
        outs = {o.request_id: o for o in engine.step()}
        assert a.num_computed_tokens == len(PROMPTS[0])  # nothing running: no hold
        b = engine.add_request("b", {"prompt_token_ids": PROMPTS[2]}, params)
        b.arrival_time_s = 0.0
        outs.update({o.request_id: o for o in engine.step()})
        assert b.num_computed_tokens == 0  # held behind a's decodes
        _drain(engine, outs)
        _assert_empty(engine)
        results[async_steps] = {r: o.token_ids for r, o in outs.items()}
    assert results[True] == results[False] and sorted(results[True]) == ["a", "b"]


def test_keep_kv_request_that_stops_early_holds_what_sync_holds(free_run):
    """keep_kv with max_tokens > 1 stopping on its first token: the async
    engine already ran its next row (here into a fresh block, the prompt
    filling its blocks exactly); the held lease is the sync one."""
    prompt = PROMPTS[0][:8]
    held = {}
    for async_steps in (False, True):
        engine = _engine(async_steps)
        engine.add_request("free", {"prompt_token_ids": prompt}, SamplingParams(temperature=0, max_tokens=1))
        (free,) = _drain(engine).values()
        params = SamplingParams(temperature=0, max_tokens=4, stop_token_ids=[free.first_token])
        engine.add_request("p", {"prompt_token_ids": prompt}, params, keep_kv=True)
        (out,) = _drain(engine).values()
        held[async_steps] = (out.token_ids, out.finish_reason, out.num_computed_tokens, len(out.block_ids))
        _assert_empty(engine, held=len(out.block_ids))
        engine.release("p")
        _assert_empty(engine)
    assert held[True] == held[False] == ([held[False][0][0]], "stop", 8, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="graph mode needs a CUDA device")
def test_graph_mode_on_cuda_async_matches_sync():
    """Captured decode and sampler graphs, the runner's steady-decode slice copy and the sampler's packed
    row upload (MinerU-like penalties and n-gram bans), async against sync, fp32."""
    params = [SamplingParams(temperature=0, max_tokens=8 + 3 * i, ignore_eos=True, presence_penalty=1.0,
                             frequency_penalty=0.05, no_repeat_ngram_size=4) for i in range(len(PROMPTS))]
    _, want = _run(False, params, device="cuda", mode="graph")
    _, got = _run(True, params, device="cuda", mode="graph")
    _same(want, got)
