"""Both step policies compute the same thing: greedy tokens agree."""
from qwen2vl_tiny import IMAGE, VEND, VSTART, make_image

from inference import LLM, SamplingParams


def test_prefill_first_and_mixed_give_the_same_tokens():
    reqs = [{"prompt_token_ids": [5, 6, VSTART, IMAGE, VEND, 7], "images": [make_image(56 + 28 * i, 84, seed=i)]}
            for i in range(3)] + [{"prompt_token_ids": list(range(10, 40))}]
    outs = {}
    for policy in ("mixed", "prefill_first"):
        llm = LLM("dummy:tiny", device="cpu", dtype="float32", mode="eager", max_num_batched_tokens=48,
                  num_kv_blocks=64, scheduling=policy)
        outs[policy] = [o.token_ids for o in llm.generate(reqs, SamplingParams(temperature=0, max_tokens=6, ignore_eos=True))]
    assert outs["mixed"] == outs["prefill_first"]
    assert all(len(t) == 6 for t in outs["mixed"])


def test_prefill_hold_batches_arrivals_and_keeps_tokens():
    """Arrivals behind running decodes wait (decode-only steps) until enough
    prompt tokens are queued (hold 30: the third 12-token arrival releases all
    three at once) or the oldest has waited hold_s (hold 1000: released by the
    clock); the tokens are those of the unheld engine."""
    now = [0.0]
    params = SamplingParams(temperature=0, max_tokens=30, ignore_eos=True)
    out = {}
    for hold in (0, 30, 1000):
        llm = LLM("dummy:tiny", device="cpu", dtype="float32", mode="eager", num_kv_blocks=64,
                  scheduling="prefill_first", prefill_hold_tokens=hold, prefill_hold_s=1.0)
        eng = llm.engine
        eng.scheduler.clock = lambda: now[0]
        now[0] = 0.0
        eng.add_request("first", {"prompt_token_ids": list(range(10, 30))}, params)
        for _ in range(3):
            eng.step()  # "first" is decoding
        admitted_at, late = {}, []
        for i in range(3):  # three 12-token arrivals, one every two steps
            late.append(eng.add_request(f"late{i}", {"prompt_token_ids": list(range(40 + i, 52 + i))}, params))
            late[-1].arrival_time_s = now[0]
            for _ in range(2):
                eng.step()
                for req in late:
                    if req.num_computed_tokens and req.request_id not in admitted_at:
                        admitted_at[req.request_id] = i
        done = {}
        while eng.has_unfinished_requests():
            now[0] += 0.25
            for o in eng.step():
                done[o.request_id] = o.token_ids
        out[hold] = (admitted_at, done)
    assert out[0][0] == {"late0": 0, "late1": 1, "late2": 2}  # each arrival prefilled at once
    assert out[30][0] == {"late0": 2, "late1": 2, "late2": 2}  # 36 >= 30 queued tokens: one prefill step
    assert out[1000][0] == {}  # never enough tokens: released only once the clock passed hold_s
    assert out[0][1] == out[30][1] == out[1000][1] and len(out[0][1]) == 4
