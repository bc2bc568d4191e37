"""EngineClient / EngineRunner: chat prompts, decoding with the layout
grammar's special tokens kept, sampling mapping, loop stop, and answers
from a real (tiny, random) engine in request order."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from docpipe.models.base import LayoutBlock, VLMRequest, get_family
from docpipe.models.engine_client import EngineClient, EngineRunner, PromptCodec
from docpipe.models.mineru25.prompts import LAYOUT_PROMPT, chat_prompt, prompt_for
from docpipe.models.mineru25.sampling import sampling_for
from inference.models.presets import get_preset
import vlm_tiny_checkpoint as tiny

torch.set_num_threads(1)  # 2 shared cores: intra-op threads only contend
GRAMMAR = "<|box_start|>10 20 300 400<|box_end|><|ref_start|>title<|ref_end|><|rotate_up|>"




def _request(kind="text", color=(255, 255, 255), size=(112, 56), max_tokens=None):
    sampling = sampling_for(kind, *size)
    if max_tokens is not None:
        sampling.update(max_tokens=max_tokens, ignore_eos=True)
    prompt = LAYOUT_PROMPT if kind == "layout" else prompt_for(kind)[0]
    return VLMRequest(Image.new("RGB", size, color), prompt, sampling, kind)


def test_decode_keeps_special_tokens_and_cuts_at_end_of_turn():
    tok = tiny.build_tokenizer()
    codec = PromptCodec(get_preset("tiny"), tok)
    ids = tok.encode(GRAMMAR + "<|im_end|>junk after the turn", add_special_tokens=False)
    assert codec.decode(ids) == GRAMMAR
    # what skip_special_tokens=True would have left: the grammar is gone
    assert "<|box_start|>" not in tok.decode(ids, skip_special_tokens=True)
    assert set(codec.stop_ids) == {tiny.SPECIAL_IDS["<|im_end|>"], tiny.SPECIAL_IDS["<|endoftext|>"]}


def test_prompt_is_the_family_chat_template_text_with_a_tokenizer():
    codec = PromptCodec(get_preset("tiny"), tiny.build_tokenizer())
    image = Image.new("RGB", (56, 56))
    req = codec.request(chat_prompt("\nTable Recognition:"), image)
    # the ids the engine's processor would encode the prompt text into (prepared off the step thread)
    want = codec.tokenizer.encode(chat_prompt("\nTable Recognition:"), add_special_tokens=False)
    assert req == {"prompt_token_ids": want, "images": [image]}
    assert codec.request(chat_prompt("\nTable Recognition:"), image)["prompt_token_ids"] == want  # memoised


def test_stand_in_prompt_ids_without_a_tokenizer():
    codec = PromptCodec(get_preset("tiny"))
    cfg = get_preset("tiny")
    text = chat_prompt("\nLayout Detection:")
    ids = codec.request(text, Image.new("RGB", (56, 56)))["prompt_token_ids"]
    image_ids = [cfg.vision_start_token_id, cfg.image_token_id, cfg.vision_end_token_id]
    start = ids.index(cfg.vision_start_token_id)
    assert ids[start:start + 3] == image_ids and ids.count(cfg.image_token_id) == 1
    others = ids[:start] + ids[start + 3:]
    assert all(0 <= t < cfg.image_token_id for t in others)
    # like Qwen's tokenizer: ~20 text tokens (each <|im_start|>/<|im_end|> marker is one)
    assert 18 <= len(others) <= 30 and text.count("<|im_") == 5
    assert codec.request(text, Image.new("RGB", (56, 56)))["prompt_token_ids"] == ids  # deterministic
    assert codec.decode([5, 6, cfg.eos_token_ids[0], 7]) == "<|tok_5|><|tok_6|>"


class _FakeReq:
    def __init__(self, pattern, max_tokens):
        self.tokens, self.pattern, self.max_tokens = [], pattern, max_tokens
        self.status = SimpleNamespace(is_finished=False)

    @property
    def num_output_tokens(self):
        return len(self.tokens)

    @property
    def output_token_ids(self):
        return list(self.tokens)


class _FakeLoopEngine:
    """Each step appends one token to every live request: request 'loop' repeats
    a 3-token unit forever, request 'prose' never repeats and stops at max_tokens."""

    def __init__(self):
        self.live, self.aborted = {}, []

    def add_request(self, request_id, processed, params):
        pattern = (lambda i: (7, 8, 9)[i % 3]) if processed == "loop" else (lambda i: i % 250)
        self.live[request_id] = _FakeReq(pattern, params)
        return self.live[request_id]

    def step(self):
        done = []
        for rid, req in list(self.live.items()):
            req.tokens.append(req.pattern(len(req.tokens)))
            if len(req.tokens) == req.max_tokens:
                req.status.is_finished = True
                done.append(SimpleNamespace(request_id=rid, token_ids=req.output_token_ids))
                del self.live[rid]
        return done

    def abort(self, request_id):
        self.aborted.append(request_id)
        self.live.pop(request_id).status.is_finished = True


def test_runner_aborts_a_looping_request_early_and_keeps_the_rest():
    engine = _FakeLoopEngine()
    client = SimpleNamespace(engine=engine, codec=SimpleNamespace(decode=lambda ids: " ".join(map(str, ids))),
                             prepare_host=lambda r: (r.prompt, r.sampling["max_tokens"]),
                             processor=SimpleNamespace(finish=lambda host: host))
    runner = EngineRunner(client)
    runner.submit("a", VLMRequest(Image.new("RGB", (28, 28)), "loop", {"max_tokens": 4000}, "text"))
    runner.submit("b", VLMRequest(Image.new("RGB", (28, 28)), "prose", {"max_tokens": 600}, "text"))
    finished = {}
    while runner.has_pending():
        for f in runner.poll():
            finished[f.tag] = f
    assert finished["a"].is_loop and 200 <= finished["a"].num_output_tokens < 300
    assert engine.aborted == ["vlm-0"]
    assert not finished["b"].is_loop and finished["b"].num_output_tokens == 600
    # the answer keeps the whole periodic tail, so fill_block can flag and cut it
    lb = LayoutBlock("text", (0, 0, 1, 1))
    get_family("mineru25").fill_block(lb, finished["a"].answer)
    assert lb.is_loop and len(lb.content) < len(finished["a"].answer)


def test_upload_thread_keeps_submit_order_and_fails_one_request_alone():
    engine = _FakeLoopEngine()

    def finish(host, off_thread=False):
        assert off_thread  # the upload stage runs it on its thread
        if host == "bad":
            raise ValueError("image cannot be uploaded")
        return host

    client = SimpleNamespace(engine=engine, codec=SimpleNamespace(decode=lambda ids: " ".join(map(str, ids))),
                             prepare_host=lambda r: (r.prompt, r.sampling["max_tokens"]),
                             processor=SimpleNamespace(finish=finish))
    runner = EngineRunner(client, upload_thread=True)
    for tag, prompt, n in [("p1", "prose", 5), ("x", "bad", 5), ("p2", "prose", 7)]:
        runner.submit(tag, VLMRequest(Image.new("RGB", (28, 28)), prompt, {"max_tokens": n}, "text"))
    finished = {}
    while runner.has_pending():
        for f in runner.poll():
            finished[f.tag] = f
    runner.close()
    assert finished["x"].error == "ValueError: image cannot be uploaded"
    assert (finished["p1"].num_output_tokens, finished["p2"].num_output_tokens) == (5, 7)
    assert list(engine.live) == [] and sorted(finished) == ["p1", "p2", "x"]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    ckpt = tiny.build_checkpoint(tmp_path_factory.mktemp("tiny_vlm"))
    return EngineClient.open(ckpt, device="cpu", mode="eager", num_kv_blocks=512, max_num_seqs=16,
                             max_model_len=1024)


def test_prepare_maps_family_sampling_and_clamps_to_the_context(client):
    req = _request("table", size=(896, 392))
    processed, params = client.prepare(req)
    assert params.presence_penalty == 1.0 and params.frequency_penalty == 0.005
    assert params.no_repeat_ngram_size == 100 and params.is_greedy
    assert params.max_tokens == 1024 - len(processed.token_ids) < req.sampling["max_tokens"]
    assert set(params.stop_token_ids) >= {303, 257}
    text = client.engine.processor.tokenizer.decode(processed.token_ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert text.endswith("\nTable Recognition:<|im_end|>\n<|im_start|>assistant\n")


def test_generate_answers_in_request_order_and_batching_does_not_change_them(client):
    reqs = [_request(color=(255, 255, 255), max_tokens=12), _request("layout", color=(0, 0, 0), size=(1036, 1036),
                                                                    max_tokens=20)]
    together = client.generate(reqs)
    alone = [client.generate([r])[0] for r in reqs]
    assert together == alone
    assert all(isinstance(a, str) for a in together) and together[0] != together[1]


def test_runner_answers_are_the_same_with_an_upload_thread(client):
    reqs = [_request(color=(255, 255, 255), max_tokens=10), _request("table", color=(0, 0, 0), max_tokens=10),
            _request(color=(90, 20, 200), size=(56, 280), max_tokens=10)]

    def run(upload_thread):
        runner = client.runner(upload_thread=upload_thread)
        for i, r in enumerate(reqs):
            runner.submit(i, r)
        out = {}
        while runner.has_pending():
            out.update((f.tag, f.answer) for f in runner.poll())
        runner.close()
        return out

    inline = run(False)
    assert run(True) == inline and len(inline) == 3


def test_close_aborts_what_is_in_flight_and_the_engine_serves_the_next_runner(client):
    runner = client.runner()
    runner.submit("a", _request(max_tokens=50))
    runner.submit("b", _request(color=(0, 0, 0), max_tokens=50))
    runner.poll()
    assert client.engine.has_unfinished_requests()
    runner.close()
    assert not client.engine.has_unfinished_requests() and not runner.has_pending()
    assert client.generate([_request(max_tokens=5)])  # a fresh runner on the same engine
