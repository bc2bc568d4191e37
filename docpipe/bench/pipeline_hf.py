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


def hf_config(cfg, attn: str):
    from transformers import Qwen2VLConfig
    v = cfg.vision
    hf = Qwen2VLConfig(
        text_config=dict(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                         num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
                         num_key_value_heads=cfg.num_key_value_heads, rms_norm_eps=cfg.rms_norm_eps,
                         max_position_embeddings=cfg.max_position_embeddings, eos_token_id=cfg.eos_token_ids[0],
                         bos_token_id=None, pad_token_id=0, rope_parameters={"rope_type": "default", "mrope_section": cfg.mrope_section,
                                                          "rope_theta": cfg.rope_theta}),
        vision_config=dict(depth=v.depth, embed_dim=v.embed_dim, hidden_size=v.hidden_size, num_heads=v.num_heads,
                           mlp_ratio=v.mlp_ratio, patch_size=v.patch_size, spatial_merge_size=v.spatial_merge_size,
                           temporal_patch_size=v.temporal_patch_size, in_channels=v.in_channels),
        image_token_id=cfg.image_token_id, vision_start_token_id=cfg.vision_start_token_id,
        vision_end_token_id=cfg.vision_end_token_id, tie_word_embeddings=cfg.tie_word_embeddings,
        video_token_id=151656 if cfg.vocab_size > 151656 else cfg.image_token_id + 4)
    hf._attn_implementation = attn
    return hf


def baseline_model(model: str, cfg, baseline: str, device: str, torch_dtype):
    """(HF model or None, checkpoint for the engine, TemporaryDirectory or None); see module doc."""
    import torch

    engine_model, hf, tmp = model, None, None
    if model.startswith("dummy:"):  # random weights, saved once so both sides (and the processor) match
        from transformers import Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor
        with torch.device(device):
            hf = Qwen2VLForConditionalGeneration(hf_config(cfg, "sdpa")).to(torch_dtype).eval()
        tmp = tempfile.TemporaryDirectory(prefix="docpipe-bench-")
        hf.save_pretrained(tmp.name)
        # MinerU2.5 sees the 1036x1036 layout image unresized (1369 tokens); the default cap (1280) would shrink it
        Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=LAYOUT_PIXELS).save_pretrained(tmp.name)
        engine_model = tmp.name
    elif baseline == "transformers":
        from transformers import Qwen2VLForConditionalGeneration
        hf = Qwen2VLForConditionalGeneration.from_pretrained(model, dtype=torch_dtype).to(device).eval()
    return (hf if baseline == "transformers" else None), engine_model, tmp


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
