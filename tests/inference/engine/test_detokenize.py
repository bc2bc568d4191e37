"""detokenize=False: the engine leaves decoding to the caller (no second decode)."""
from inference import LLM, SamplingParams


def test_detokenize_false_skips_the_engines_decode(monkeypatch):
    llm = LLM("dummy:tiny", device="cpu", dtype="float32", mode="eager", num_kv_blocks=32)
    calls = []
    monkeypatch.setattr(llm.engine.processor, "decode", lambda ids: calls.append(list(ids)) or "text")
    req = {"prompt_token_ids": [5, 6, 7]}
    off = llm.generate([req], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True, detokenize=False))[0]
    assert off.text is None and calls == [] and len(off.token_ids) == 3
    on = llm.generate([req], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))[0]
    assert on.text == "text" and calls == [on.token_ids] and on.token_ids == off.token_ids
