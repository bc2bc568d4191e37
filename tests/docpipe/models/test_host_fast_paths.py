"""The host-cost fast paths give exactly what the plain code gave: find_loop's
skip of periods that fail at the last element, the layout image of a render
already 1036x1036, the codec's memo of prompt ids, the cached chat prompt."""
from __future__ import annotations

import random
from types import SimpleNamespace

from PIL import Image

from docpipe.models.engine_client import PromptCodec
from docpipe.models.loops import MAX_PERIOD, MIN_REPEATS_LONG, MIN_REPEATS_SHORT, MIN_SPAN, LONG_UNIT, find_loop
from docpipe.models.mineru25 import images, prompts


def _reference_find_loop(seq, max_period=MAX_PERIOD, min_span=MIN_SPAN):
    """find_loop as written before the fast path: every period's tail run counted."""
    def tail_run(p):
        n, run = len(seq), 0
        while run < n - p and seq[n - 1 - run] == seq[n - 1 - run - p]:
            run += 1
        return run
    best_span, best_p = 0, 0
    for p in range(1, min(max_period, len(seq) // 2) + 1):
        if best_span >= min_span and p % best_p == 0:
            continue
        span = tail_run(p) + p
        if span > best_span:
            best_span, best_p = span, p
    if best_p == 0 or best_span < min_span:
        return None
    repeats = best_span / best_p
    if repeats < (MIN_REPEATS_LONG if best_p >= LONG_UNIT else MIN_REPEATS_SHORT):
        return None
    return (len(seq) - best_span, best_p, repeats)


def test_find_loop_matches_reference_on_random_and_looping_sequences():
    rng = random.Random(7)
    cases = [[], [1], "a", "ab" * 150, "x" * 300]
    for _ in range(300):
        alphabet = rng.choice(["ab", "abc", "abcdefgh", "<|tok_1|><|tok_22|>"])
        head = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
        unit = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 80)))
        tail = unit * rng.randrange(0, 30)
        cases.append(head + tail[:rng.randrange(0, len(tail) + 1)])
        cases.append([rng.randrange(4) for _ in range(rng.randrange(0, 600))])  # token ids
    looped = 0
    for seq in cases:
        got = find_loop(seq)
        want = _reference_find_loop(seq)
        assert (got and (got.start, got.period, got.repeats)) == want, seq
        looped += want is not None
    assert 20 < looped < len(cases) - 20  # both outcomes exercised


def test_layout_image_of_a_layout_sized_render_is_the_resize():
    render = Image.effect_noise(images.LAYOUT_SIZE_PX, 60).convert("RGB")
    assert images.layout_image(render).tobytes() == render.resize(
        images.LAYOUT_SIZE_PX, Image.Resampling.BICUBIC).tobytes()
    other = Image.effect_noise((700, 900), 60).convert("RGB")
    assert images.layout_image(other).size == images.LAYOUT_SIZE_PX
    grey = Image.effect_noise(images.LAYOUT_SIZE_PX, 60)  # mode L: converted, not passed through
    assert images.layout_image(grey).mode == "RGB"


def test_codec_memo_gives_the_uncached_ids_and_fresh_lists():
    cfg = SimpleNamespace(vision_start_token_id=900, image_token_id=901, vision_end_token_id=902,
                          eos_token_ids=[903], vocab_size=1000)
    codec = PromptCodec(cfg)
    prompt = prompts.chat_prompt(prompts.TABLE_PROMPT)
    first = codec.request(prompt, None)["prompt_token_ids"]
    second = codec.request(prompt, None)["prompt_token_ids"]
    before, _, after = prompt.partition(prompts.IMAGE_PLACEHOLDER)
    assert first == second == [*codec._ids_uncached(before), 900, 901, 902, *codec._ids_uncached(after)]
    first.append(-1)  # a caller's list is its own: the memo is not touched
    assert codec.request(prompt, None)["prompt_token_ids"] == second


def test_cached_chat_prompt_is_the_template():
    for p in (prompts.LAYOUT_PROMPT, prompts.TEXT_PROMPT, "\nother"):
        assert prompts.chat_prompt(p) == prompts.CHAT_TEMPLATE.format(
            system=prompts.SYSTEM_PROMPT, image=prompts.IMAGE_PLACEHOLDER, prompt=p)
