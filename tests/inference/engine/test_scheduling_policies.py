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
