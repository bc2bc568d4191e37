"""Async engine steps (step N+1 launched before step N's tokens reach the
host) against the synchronous loop (async_scheduling=False): same tokens,
same finish reasons and bookkeeping, each finished request out of step()
exactly once, no KV block leaked. Stop conditions are taken from a sync run's
own outputs so they fire at different steps of one batch."""
import pytest

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


def test_stop_tokens_at_different_steps_with_logits(free_run):
    """Request i stops on its (i % 5)-th token; every other one returns logits."""
    params = [SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[free_run[str(i)][i % 5]],
                             return_logits=i % 2 == 0) for i in range(len(PROMPTS))]
    _, want = _run(False, params)
    assert sorted({len(o.token_ids) for o in want.values()}) == [1, 2, 3, 4, 5]
    _, got = _run(True, params)
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
