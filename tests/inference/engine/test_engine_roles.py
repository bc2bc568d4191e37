"""The disaggregated roles on one engine class: a prefill-only run that keeps
its KV blocks, KV copied block by block into a second engine's pool, decode
from there; tokens equal a colocated run. Plus a bf16 run."""
import torch

from inference import LLM, SamplingParams
from qwen2vl_tiny import image_prompt, make_image

REQUEST = {"prompt_token_ids": image_prompt([5, 6], [7, 8, 9]), "images": [make_image(112, 84, 5)]}


def _drain(engine):
    outs = []
    while engine.has_unfinished_requests():
        outs += engine.step()
    return outs


def test_prefill_then_decode_from_external_kv_equals_colocated(tiny_ckpt):
    greedy = dict(temperature=0.0, ignore_eos=True)
    colocated = LLM(tiny_ckpt, dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=40, mode="eager")
    want = colocated.generate(REQUEST, SamplingParams(max_tokens=8, **greedy))[0]

    prefill = LLM(tiny_ckpt, dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=40, mode="eager").engine
    prefill.add_request("p", REQUEST, SamplingParams(max_tokens=1, **greedy), keep_kv=True)
    (first,) = _drain(prefill)
    assert first.block_ids and first.num_computed_tokens == first.num_prompt_tokens
    assert first.rope_delta < 0  # the image grid compresses positions

    decode = LLM(tiny_ckpt, dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=50, mode="eager").engine
    decode.add_request("other", {"prompt_token_ids": [3, 3, 3, 3, 3]}, SamplingParams(max_tokens=3, **greedy))
    decode.step()  # so the decode pool's block placement differs from prefill's
    dst = decode.add_prefilled_request("d", first.num_prompt_tokens, first.first_token, first.rope_delta,
                                       SamplingParams(max_tokens=8, **greedy))
    assert dst != first.block_ids[: len(dst)]
    decode.kv_pool[dst] = prefill.kv_pool[first.block_ids]  # the transfer engine's job
    decode.kv_ready("d")
    got = {o.request_id: o for o in _drain(decode)}["d"]
    assert got.token_ids == want.token_ids

    free_before = prefill.block_manager.num_free_blocks
    prefill.release("p")
    assert prefill.block_manager.num_free_blocks == free_before + len(first.block_ids)
    prefill.block_manager.check_invariants()


def test_bf16_run_completes(tiny_ckpt):
    llm = LLM(tiny_ckpt, dtype="bfloat16", device="cpu", kv_block_size=4, num_kv_blocks=40, mode="eager")
    assert llm.engine.kv_pool.dtype == torch.bfloat16
    outs = llm.generate([REQUEST, {"prompt_token_ids": [1, 2, 3]}],
                        SamplingParams(temperature=0.8, top_p=0.9, max_tokens=6, ignore_eos=True, seed=1))
    assert [len(o.token_ids) for o in outs] == [6, 6]
    assert all(0 <= t < 320 for o in outs for t in o.token_ids)
