"""The graph path's static, bucket-padded decode buffers (run eagerly here,
capture=False) give the same tokens as the plain eager path."""
from inference import LLM, SamplingParams
from inference.worker.cuda_graph import DecodeGraphs, bucket_sizes
from qwen2vl_tiny import image_prompt, make_image


def test_bucket_sizes():
    assert bucket_sizes(1) == [1]
    assert bucket_sizes(6) == [1, 2, 4, 6]
    assert bucket_sizes(1000)[-1] == 512


def test_padded_static_decode_equals_eager(tiny_ckpt):
    requests = [{"prompt_token_ids": image_prompt([5], [6, 7]), "images": [make_image(56, 84, 9)]},
                {"prompt_token_ids": [8, 9, 10]}, {"prompt_token_ids": [11] * 7}]
    params = SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True)
    kwargs = dict(dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=40, max_num_seqs=6,
                  max_model_len=64, mode="eager")
    want = LLM(tiny_ckpt, **kwargs).generate(requests, params)
    llm = LLM(tiny_ckpt, **kwargs)
    graphs = DecodeGraphs(llm.engine.runner, capture=False)
    llm.engine.runner.graphs = graphs
    calls = []
    run = graphs.run
    graphs.run = lambda batch: calls.append(batch.num_tokens) or run(batch)
    got = llm.generate(requests, params)
    assert [o.token_ids for o in got] == [o.token_ids for o in want]
    assert 3 in calls  # decode steps of 3 sequences went through bucket 4 with one padded row
