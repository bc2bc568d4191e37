"""The graph path's static, bucket-padded prefill buffers (run eagerly here, capture=False) give the
same tokens as the plain eager path: fresh prompts with images, chunked prefill, steps that mix
prompt chunks with decodes."""
import gc

import pytest
import torch

from inference import LLM, SamplingParams
from inference.worker.prefill_graph import PrefillGraphs, token_buckets
from qwen2vl_tiny import image_prompt, make_image


def test_token_buckets_step_up_with_size():
    buckets = token_buckets(16384)
    assert buckets[:3] == [256, 512, 768] and 2048 in buckets and 2560 in buckets and 9216 in buckets
    assert buckets[-1] == 16384 and all(b < c for b, c in zip(buckets, buckets[1:]))
    assert token_buckets(300) == [256, 300]


def _requests():
    return [{"prompt_token_ids": image_prompt([5], [6, 7]), "images": [make_image(56, 84, 9)]},
            {"prompt_token_ids": [8, 9, 10]},
            {"prompt_token_ids": image_prompt([11] * 9, [12]), "images": [make_image(112, 56, 4)]},
            {"prompt_token_ids": [13] * 40}]


@pytest.mark.parametrize("budget", [512, 24], ids=["whole-prompts", "chunked"])
def test_padded_static_prefill_equals_eager(tiny_ckpt, budget):
    params = SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True)
    kwargs = dict(dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=80, max_num_seqs=6,
                  max_model_len=96, mode="eager", max_num_batched_tokens=budget)
    want = LLM(tiny_ckpt, **kwargs).generate(_requests(), params)
    llm = LLM(tiny_ckpt, **kwargs)
    runner = llm.engine.runner
    graphs = PrefillGraphs(runner, capture=False)
    runner.prefill_graphs = graphs
    calls = []
    run = graphs.run

    def recorded(embeds, batch):
        hidden = run(embeds, batch)
        calls.append((batch.num_tokens, len(batch.q_lens), hidden is not None))
        return hidden

    graphs.run = recorded
    got = llm.generate(_requests(), params)
    assert [o.token_ids for o in got] == [o.token_ids for o in want]
    prefill = [(tokens, seqs) for tokens, seqs, took in calls if tokens > seqs]
    assert prefill and all(took for tokens, seqs, took in calls if tokens > seqs), "prefill steps stayed eager"
    assert not any(took for tokens, seqs, took in calls if tokens == seqs)  # decode-shaped steps: not this path
    assert any(tokens < graphs.bucket_of(tokens) for tokens, _ in prefill)  # steps with padding rows
    if budget == 24:  # chunked: some step mixed prompt chunks with decodes of earlier requests
        assert any(seqs > 1 for _, seqs in prefill)


def _release_device_memory():
    """Engines left by earlier tests (reference cycles) keep their KV pools cached; each engine sizes
    its own pool from what the process holds, so they go back first."""
    gc.collect()
    torch.cuda.empty_cache()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="graph capture needs a CUDA device")
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_captured_prefill_gives_the_eager_tokens_on_the_gpu(tiny_ckpt, dtype):
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    # a 256-token budget: the graph's one bucket and the eager steps' padding (256) give the same
    # matrix shapes, so cuBLAS computes each row alike on both sides (it may not across row counts)
    kwargs = dict(dtype=dtype, device="cuda", kv_block_size=16, max_num_seqs=8, max_model_len=512,
                  max_num_batched_tokens=256, gpu_memory_utilization=0.2)
    _release_device_memory()
    want = LLM(tiny_ckpt, mode="eager", **kwargs).generate(_requests(), params)
    _release_device_memory()
    llm = LLM(tiny_ckpt, mode="graph", **kwargs)
    runner = llm.engine.runner
    graphs = runner.prefill_graphs = PrefillGraphs(runner)
    run = graphs.run

    def nan_padded(embeds, batch):  # padding rows hold anything: NaN there must not reach a real row
        graphs.embeds.fill_(float("nan"))
        return run(embeds, batch)

    graphs.run = nan_padded
    got = llm.generate(_requests(), params)
    assert graphs.graphs, "no prefill step replayed a graph"
    if dtype == "float32":
        assert [o.token_ids for o in got] == [o.token_ids for o in want]
    else:  # bf16 random weights: argmax ties; the first token comes from the prefill itself
        assert [o.token_ids[0] for o in got] == [o.token_ids[0] for o in want]
