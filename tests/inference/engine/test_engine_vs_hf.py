"""End to end against transformers: several requests with images of several
sizes and prompts of different lengths, batched together, with chunked
prefill (small token budget) and preemption (small KV pool) forced.
Teacher-forced logits match within 1e-4 and greedy tokens are identical to
HF generate() (run with mm_token_type_ids, see qwen2vl_tiny)."""
import pytest
import torch
from transformers import GenerationConfig

from inference import LLM, SamplingParams
from qwen2vl_tiny import hf_inputs, image_prompt, make_image

MAX_TOKENS = 12


def _requests():
    return [
        {"prompt_token_ids": image_prompt([5, 6, 7], [8, 9, 10, 11]), "images": [make_image(112, 84, 0)]},
        {"prompt_token_ids": image_prompt([12] * 9, [13, 14]), "images": [make_image(56, 56, 1)]},
        {"prompt_token_ids": list(range(20, 37))},  # text only
        {"prompt_token_ids": image_prompt([15, 16], [17], num_images=2),
         "images": [make_image(84, 112, 2), make_image(224, 168, 3)]},
        {"prompt_token_ids": image_prompt([], [18, 19, 20]), "images": [make_image(112, 112, 4)]},
    ]


@pytest.mark.parametrize("pad", [0, 16])  # 16: eager steps padded to 16-row multiples (rows dropped)
def test_batched_greedy_with_chunking_and_preemption_matches_transformers(hf_model, tiny_ckpt, monkeypatch, pad):
    # Small vision batches, so one step's images are encoded in several calls.
    monkeypatch.setattr("inference.worker.model_runner.ENCODER_PATCHES_PER_CALL", 100)
    llm = LLM(tiny_ckpt, dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=30,
              max_num_seqs=4, max_num_batched_tokens=24, mode="eager", prefill_pad_tokens=pad)
    requests = _requests()
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True, return_logits=True)
    results = llm.generate(requests, params)

    prompts = [llm.engine.processor(r) for r in requests]
    assert max(len(p.token_ids) for p in prompts) > 24, "some prompt must need several prefill chunks"
    assert sum(r.num_preemptions for r in results) > 0, "the small pool must force preemption"
    llm.engine.block_manager.check_invariants()
    assert llm.engine.block_manager.num_free_blocks == 30, "all blocks come back after the batch"

    gen_cfg = GenerationConfig(max_new_tokens=MAX_TOKENS, do_sample=False, eos_token_id=None, pad_token_id=0)
    for prompt, result in zip(prompts, results):
        kwargs = hf_inputs(prompt, hf_model)
        with torch.no_grad():
            hf_tokens = hf_model.generate(**kwargs, generation_config=gen_cfg)[0, len(prompt.token_ids):].tolist()
            full = dict(kwargs)
            full["input_ids"] = torch.tensor([prompt.token_ids + result.token_ids[:-1]])
            full["attention_mask"] = torch.ones_like(full["input_ids"])
            if "mm_token_type_ids" in kwargs:
                full["mm_token_type_ids"] = torch.nn.functional.pad(kwargs["mm_token_type_ids"], (0, MAX_TOKENS - 1))
            ref_logits = hf_model(**full).logits[0, len(prompt.token_ids) - 1:]
        assert result.token_ids == hf_tokens
        assert result.logits.shape == ref_logits.shape
        torch.testing.assert_close(result.logits, ref_logits, atol=1e-4, rtol=0)
