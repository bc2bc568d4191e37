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
