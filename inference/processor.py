"""Multimodal processor: request -> ProcessedPrompt.

A request is a dict with either `prompt_token_ids` (each image = one
<|image_pad|> between <|vision_start|>/<|vision_end|>), or `prompt` (text,
tokenized as is, same placeholder convention) or `messages` (chat turns
rendered by the tokenizer's chat template; image parts are
{"type": "image"}); plus `images` (PIL images, in placeholder order).

The checkpoint's image processor (Qwen2VLImageProcessor, from the model
directory when it has one, else its defaults) resizes and patchifies each
image; every placeholder is expanded to grid_t*grid_h*grid_w / merge^2 image
tokens, and the M-RoPE positions of the expanded prompt are computed here,
once per request, on the CPU (memoised per prompt ids and image grids: the
same prompt with the same image sizes recurs; the tensors are then shared
between requests and must not be modified in place). Images that the
processor would not resize take the torch fast path (inference.models.image_patches), computed on
`device`; others go through the checkpoint's processor.

Two halves, so a caller may run the host work on another thread:
`host(request)` -> HostPrompt does everything that touches no device (prompt
ids, the image as a uint8 array or the processor's pixels, expansion,
positions); `finish(host_prompt)` -> ProcessedPrompt uploads and patchifies
(the fast path) on `device`. `processor(request)` is `finish(host(request))`.
`host` makes no CUDA call, so it is safe on a thread other than the one
that runs (and graph-captures) the engine's steps. `finish` runs on that
thread, or with `off_thread=True` on another one: its device work is then
queued on the upload stream (never the engine's, so a graph being captured
there is not touched; captures use capture_error_mode="thread_local") and
the result carries a `ready` event; `LLMEngine.add_request` makes the
engine's stream wait for it (`adopt`) before any step reads the pixels.
Neither half shares mutable state across calls, except the tokenizer,
which a caller preparing on several threads must not use concurrently
(pass `prompt_token_ids` instead).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inference.models.image_patches import PatchRule, rgb_pixels
from inference.models.model_config import ModelConfig
from inference.h2d import to_device
from inference.streams import side_stream
from inference.worker.mrope import prompt_positions


@dataclass
class ProcessedPrompt:
    token_ids: list[int]                       # expanded prompt
    positions: torch.Tensor                    # [3, len(token_ids)] int64 M-RoPE positions
    rope_delta: int                            # decode position = cache position + rope_delta
    pixel_values: torch.Tensor | None = None   # [num_patches, C*tp*p*p] all images, float32 (on the processor's device)
    image_grid_thw: list[tuple[int, int, int]] | None = None  # per image, in patches
    image_token_index: torch.Tensor | None = None  # [num_image_tokens] int64 prompt indices of image tokens
    ready: object = None  # CUDA event ending the pixels' device work when finished off the engine's thread


@dataclass
class HostPrompt:
    """`ProcessedPrompt` before the device: images not uploaded yet (see module doc)."""

    token_ids: list[int]
    positions: torch.Tensor
    rope_delta: int
    images: list  # per image: uint8 array [H, W, 3] (fast path, patchified by finish) or pixel_values on the host
    image_grid_thw: list[tuple[int, int, int]] | None = None
    image_token_index: torch.Tensor | None = None


_LAYOUT_MEMO_ENTRIES = 1024  # distinct (prompt, image sizes) kept; ~10 kB each for a block crop


def _has(path: Path | None, name: str) -> bool:
    return path is not None and (path / name).is_file()


class Processor:
    def __init__(self, cfg: ModelConfig, model_dir: str | None, device: str | torch.device = "cpu",
                 fast_patches: bool | None = None):
        from transformers import AutoImageProcessor, Qwen2VLImageProcessor

        self.cfg = cfg
        path = Path(model_dir) if model_dir and Path(model_dir).is_dir() else None
        if _has(path, "preprocessor_config.json"):
            self.image_processor = AutoImageProcessor.from_pretrained(str(path))
        else:
            bounds = {k: v for k in ("min_pixels", "max_pixels") if (v := getattr(cfg.vision, k)) is not None}
            self.image_processor = Qwen2VLImageProcessor(
                patch_size=cfg.vision.patch_size, merge_size=cfg.vision.spatial_merge_size,
                temporal_patch_size=cfg.vision.temporal_patch_size, **bounds)
        self.device = torch.device(device)
        # None: everywhere. On the CPU the fast path once lost to the processor's numpy (476 px: 39 vs
        # 11 ms, session 2); with the zero-copy Pillow view it wins, and transformers >= 5.2 without
        # torchvision falls back to a slower Pillow processor (dev box, 2 threads: 476 px 3.1 vs
        # 10.3 ms, 1036 px 13.1 vs 64.5 ms). Pixels agree within 1e-5 (test_processor_host.py).
        use_fast = True if fast_patches is None else fast_patches
        self.patch_rule = PatchRule.from_processor(self.image_processor) if use_fast else None
        # (prompt ids, grids) -> (expanded ids, positions, rope_delta, image token index); dict operations
        # are atomic, so threads preparing at once at worst lay out the same prompt twice
        self._layouts: dict[tuple, tuple] = {}
        self.tokenizer = None
        if _has(path, "tokenizer.json") or _has(path, "tokenizer_config.json"):
            from transformers import AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))

    def _prompt_ids(self, request: dict) -> list[int]:
        if "prompt_token_ids" in request:
            return list(request["prompt_token_ids"])
        if self.tokenizer is None:
            raise ValueError("request has no prompt_token_ids and the model has no tokenizer")
        if "messages" in request:
            return list(self.tokenizer.apply_chat_template(request["messages"], tokenize=True,
                                                           add_generation_prompt=True, return_dict=False))
        return self.tokenizer.encode(request["prompt"], add_special_tokens=False)

    def __call__(self, request: dict) -> ProcessedPrompt:
        return self.finish(self.host(request))

    def host(self, request: dict) -> HostPrompt:
        """The request processed up to the device upload (no CUDA call)."""
        ids = self._prompt_ids(request)
        images = list(request.get("images") or [])
        merge = self.cfg.vision.spatial_merge_size
        host_images, grids = self._host_pixels(images)
        num_pads = ids.count(self.cfg.image_token_id)
        if num_pads != len(images):
            raise ValueError(f"prompt has {num_pads} <|image_pad|> placeholders but {len(images)} images were given")
        key = (tuple(ids), tuple(grids))
        layout = self._layouts.get(key)
        if layout is None:  # the same prompt and image sizes recur (every layout page): laid out once
            expanded: list[int] = []
            grid_iter = iter(grids)
            for token in ids:
                if token == self.cfg.image_token_id:
                    t, h, w = next(grid_iter)
                    expanded.extend([token] * (t * h * w // merge ** 2))
                else:
                    expanded.append(token)
            positions, rope_delta = prompt_positions(expanded, grids, self.cfg.image_token_id, merge)
            index = torch.nonzero(torch.tensor(expanded) == self.cfg.image_token_id).flatten() if images else None
            if len(self._layouts) >= _LAYOUT_MEMO_ENTRIES:
                self._layouts.clear()
            self._layouts[key] = layout = (tuple(expanded), positions, rope_delta, index)
        expanded, positions, rope_delta, index = layout  # tensors shared by equal prompts: read-only downstream
        return HostPrompt(list(expanded), positions, rope_delta, host_images, grids or None, index)

    def finish(self, prompt: HostPrompt, off_thread: bool = False) -> ProcessedPrompt:
        """Upload (and on the fast path patchify) the images on `device`. On the engine's
        thread the pixels are ready for its stream; `off_thread`: see the module doc."""
        if off_thread and prompt.images and self.device.type == "cuda":
            stream = side_stream(self.device, "upload")  # the uploads' stream (h2d.py), ring or not
            with torch.cuda.stream(stream):
                out = self._finish(prompt)
                out.ready = torch.cuda.Event()
                out.ready.record(stream)
            return out
        return self._finish(prompt)

    def _finish(self, prompt: HostPrompt) -> ProcessedPrompt:
        pixel_values = None
        if prompt.images:
            parts = [self.patch_rule.patchify(x, self.device)[0] if isinstance(x, np.ndarray)
                     else to_device(x, self.device) for x in prompt.images]
            pixel_values = parts[0] if len(parts) == 1 else torch.cat(parts)
        return ProcessedPrompt(prompt.token_ids, prompt.positions, prompt.rope_delta, pixel_values,
                               prompt.image_grid_thw, prompt.image_token_index)

    def _host_pixels(self, images: list) -> tuple[list, list[tuple[int, int, int]]]:
        """Per image (in order): a uint8 array for the fast path or the processor's pixel_values, and its grid."""
        parts, grids = [], []
        for im in images:
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            if self.patch_rule is not None and self.patch_rule.keeps_size(rgb.height, rgb.width):
                p = self.patch_rule.patch_px
                parts.append(rgb_pixels(rgb))
                grids.append((1, rgb.height // p, rgb.width // p))  # what patchify returns for it
            else:
                out = self.image_processor(images=[rgb], return_tensors="pt")
                parts.append(out["pixel_values"].float())
                grids.append(tuple(int(x) for x in out["image_grid_thw"][0].tolist()))
        return parts, grids

    def decode(self, token_ids: list[int]) -> str | None:
        return None if self.tokenizer is None else self.tokenizer.decode(token_ids, skip_special_tokens=True)


def adopt(prompt: ProcessedPrompt) -> None:
    """Make the pixels of an off-thread `finish` safe for this thread's current stream: it
    waits for their device work, and the caching allocator keeps their memory until it is done."""
    if prompt.ready is None:
        return
    stream = torch.cuda.current_stream(prompt.pixel_values.device)
    stream.wait_event(prompt.ready)
    prompt.pixel_values.record_stream(stream)
    prompt.ready = None

