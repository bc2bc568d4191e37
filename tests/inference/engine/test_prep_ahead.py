"""LLM.generate with prompts prepared on a background thread (prep_ahead.py):
same outputs as inline preparation, errors surface with the batch aborted,
and the thread is gone when generate() returns."""
import threading

import pytest
from PIL import Image

from inference import LLM, SamplingParams
from inference.prep_ahead import PrepAhead

GREEDY = SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True)


def _llm(prepare_ahead: bool, max_num_batched_tokens: int = 64):
    # a small token budget: the first step starts before every request is prepared
    return LLM("dummy:tiny", dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=400,
               max_model_len=256, mode="eager", max_num_batched_tokens=max_num_batched_tokens,
               prepare_ahead=prepare_ahead)


def _requests(llm, n: int):
    cfg = llm.engine.processor.cfg
    out = []
    for i in range(n):
        image = Image.new("RGB", (56 + 28 * (i % 3), 56), color=(20 * i % 255, 90, 160))
        ids = [5 + i, cfg.vision_start_token_id, cfg.image_token_id, cfg.vision_end_token_id, 7, 8 + i % 4]
        out.append({"prompt_token_ids": ids, "images": [image]})
    return out


def _prep_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("prep")]


def test_prepared_ahead_equals_inline():
    inline, ahead = _llm(False), _llm(True)
    reqs = _requests(inline, 12)
    expected = [o.token_ids for o in inline.generate(reqs, GREEDY)]
    processor, threads = ahead.engine.processor, set()
    original_host = type(processor).host

    class Spy(type(processor)):
        def host(self, request):
            threads.add(threading.current_thread().name)
            return original_host(self, request)

    processor.__class__ = Spy
    got = [o.token_ids for o in ahead.generate(reqs, GREEDY)]
    assert len(threads) == 1 and next(iter(threads)).startswith("prep")  # prepared off the caller's thread
    assert got == expected
    assert all(len(t) == 5 for t in got)
    assert _prep_threads() == []


def test_a_failing_request_aborts_the_batch_and_the_engine_stays_usable():
    llm = _llm(True)
    reqs = _requests(llm, 8)
    reqs[5] = dict(reqs[5], images=[])  # one placeholder, no image: the processor rejects it
    with pytest.raises(ValueError, match="placeholders"):
        llm.generate(reqs, GREEDY)
    assert not llm.engine.has_unfinished_requests()
    assert llm.engine.block_manager.num_free_blocks == llm.engine.block_manager.num_blocks
    assert _prep_threads() == []
    good = _requests(llm, 2)
    assert [o.token_ids for o in llm.generate(good, GREEDY)] == [o.token_ids for o in _llm(False).generate(good, GREEDY)]


@pytest.mark.parametrize("prepare_ahead", [False, True])
def test_admission_stops_a_step_ahead_of_the_scheduler(prepare_ahead):
    # Admitting finishes a request (its pixels on the device): the first step must not wait for the
    # whole batch (it takes half a step's worth), and later steps keep at most ADMIT_AHEAD_STEPS budgets of prompt tokens waiting.
    from inference.llm import ADMIT_AHEAD_STEPS, first_step_tokens

    budget = 64
    llm = _llm(prepare_ahead, max_num_batched_tokens=budget)
    first = first_step_tokens(llm.config)
    reqs = _requests(llm, 40)
    engine, seen = llm.engine, []
    add, step = engine.add_request, engine.step
    admitted = []

    def counting_add(request_id, prompt, sampling):
        admitted.append(len(prompt.token_ids))
        return add(request_id, prompt, sampling)

    def recording_step():
        seen.append((len(admitted), engine.scheduler.num_waiting_tokens()))
        return step()

    engine.add_request, engine.step = counting_add, recording_step
    got = [o.token_ids for o in llm.generate(reqs, GREEDY)]
    longest = max(admitted)
    first_count, first_waiting = seen[0]
    assert first == budget // 2 and first_waiting >= first  # half a step first (all are ready or waited for)
    assert first_waiting < first + longest and first_count < len(reqs)
    assert all(w < ADMIT_AHEAD_STEPS * budget + longest for _, w in seen)
    assert ADMIT_AHEAD_STEPS >= 2 and max(w for _, w in seen[1:]) >= budget + longest  # > one step's worth kept
    assert seen[-1][0] == len(reqs)
    assert got == [o.token_ids for o in _llm(False, max_num_batched_tokens=4096).generate(reqs, GREEDY)]


def test_requests_are_taken_in_order():
    llm = _llm(True)
    prep = PrepAhead(llm.engine.processor, _requests(llm, 3), threaded=True)
    try:
        with pytest.raises(ValueError, match="in order"):
            prep.get(1)
        assert prep.get(0).token_ids
    finally:
        prep.close()


def test_preparation_stays_a_bounded_window_ahead(monkeypatch):
    # a prepared host prompt holds its image array: the thread may run only AHEAD_REQUESTS past
    # the requests generate() has taken, not through the whole call
    import inference.prep_ahead as prep_ahead

    monkeypatch.setattr(prep_ahead, "AHEAD_REQUESTS", 4)
    llm = _llm(True, max_num_batched_tokens=32)
    reqs = _requests(llm, 20)
    engine, processor = llm.engine, llm.engine.processor
    taken, lead = [], []
    add = engine.add_request
    original_host = type(processor).host
    index_of = {id(r): i for i, r in enumerate(reqs)}

    class Spy(type(processor)):
        def host(self, request):
            lead.append(index_of[id(request)] - len(taken))
            return original_host(self, request)

    def counting_add(request_id, prompt, sampling):
        taken.append(request_id)
        return add(request_id, prompt, sampling)

    processor.__class__, engine.add_request = Spy, counting_add
    got = [o.token_ids for o in llm.generate(reqs, GREEDY)]
    assert len(lead) == len(reqs) and max(lead) <= 4
    assert got == [o.token_ids for o in _llm(False).generate(reqs, GREEDY)]


def test_first_step_tokens_override(monkeypatch):
    from inference.llm import FIRST_STEP_ENV, first_step_tokens

    llm = _llm(False, max_num_batched_tokens=64)
    assert first_step_tokens(llm.config) == 32
    monkeypatch.setenv(FIRST_STEP_ENV, "64")
    assert first_step_tokens(llm.config) == 64
    monkeypatch.setenv(FIRST_STEP_ENV, "half")
    with pytest.raises(ValueError, match=FIRST_STEP_ENV):
        first_step_tokens(llm.config)
