"""The transformers side of `docpipe bench pipeline`: the baseline model and
the VLM client that answers page requests with HF `generate()`.

`baseline_model` gives (HF model or None, the checkpoint the engine loads,
a temporary directory to clean up or None): a `dummy:` model gets random
weights saved once, so that both sides (and the image processor) see the
same checkpoint. `TransformersClient` batches each wave per request kind
(layout / blocks, at most --hf-batch) into `generate()` calls, plain greedy
with forced lengths (the engine also applies MinerU's penalties and
no-repeat-ngram 100, which only costs it).
"""
from __future__ import annotations

import inspect
import tempfile

from docpipe.bench.timing import Clock

LAYOUT_PIXELS = 1036 * 1036  # image processor cap: the layout image passes unresized


def baseline_model(model: str, cfg, baseline: str, device: str, torch_dtype):
    """(HF model or None, checkpoint for the engine, TemporaryDirectory or None); see module doc."""
    from inference.bench import hf_reference

    engine_model, hf, tmp = model, None, None
    if model.startswith("dummy:"):  # random weights, saved once so both sides (and the processor) match
        tmp = tempfile.TemporaryDirectory(prefix="docpipe-bench-")
        # MinerU2.5 sees the 1036x1036 layout image unresized (1369 tokens); the default cap (1280) would shrink it
        hf_reference.save_random_checkpoint(cfg, tmp.name, torch_dtype, device, max_pixels=LAYOUT_PIXELS)
        engine_model = tmp.name
    if baseline == "transformers":
        hf = hf_reference.load(engine_model, torch_dtype, device)
    return hf, engine_model, tmp


class TransformersClient:
    """VLMClient over HF generate(): one batch per request kind and --hf-batch, forced lengths."""

    def __init__(self, model, engine_client, max_batch: int, clock: Clock):
        self.model, self.ec, self.max_batch, self.clock = model, engine_client, max_batch, clock

    def generate(self, requests):
        answers: dict[int, str] = {}
        order = sorted(range(len(requests)), key=lambda i: requests[i].kind != "layout")
        for kind_is_block in (False, True):
            idx = [i for i in order if (requests[i].kind != "layout") == kind_is_block]
            for k in range(0, len(idx), self.max_batch):
                chunk = idx[k:k + self.max_batch]
                for i, ans in zip(chunk, self._batch([requests[i] for i in chunk])):
                    answers[i] = ans
        return [answers[i] for i in range(len(requests))]

    def _batch(self, requests):
        import torch
        from transformers import GenerationConfig

        prompts = [self.ec.prepare(r)[0] for r in requests]
        lens = [r.sampling["max_tokens"] for r in requests]
        width = max(len(p.token_ids) for p in prompts)
        dev = self.model.device
        ids = torch.tensor([[0] * (width - len(p.token_ids)) + p.token_ids for p in prompts], device=dev)
        mask = torch.tensor([[0] * (width - len(p.token_ids)) + [1] * len(p.token_ids) for p in prompts], device=dev)
        kwargs = dict(input_ids=ids, attention_mask=mask,
                      pixel_values=torch.cat([p.pixel_values for p in prompts]).to(dev, self.model.dtype),
                      image_grid_thw=torch.tensor([g for p in prompts for g in p.image_grid_thw], device=dev))
        if "mm_token_type_ids" in inspect.signature(self.model.forward).parameters:
            # transformers >= 5 computes M-RoPE positions from it; without it generate() is not the model
            kwargs["mm_token_type_ids"] = (ids == self.model.config.image_token_id).int()
        gen = GenerationConfig(max_new_tokens=max(lens), do_sample=False, eos_token_id=None, pad_token_id=0)
        with torch.inference_mode():
            out = self.clock.wrap(self.model.generate, lambda *a, **k: "generate")(**kwargs, generation_config=gen)
        return [self.ec.codec.decode(row[width:width + n].tolist()) for row, n in zip(out, lens)]
