"""The model-family interface of the VLM document path, and its registry.

A *family* knows one document VLM's I/O: how to build its chat prompt, the
layout request for a page, how to parse the layout answer, which block crops
to send with which prompt and sampling, how to clean each answer, and how to
assemble a page into `docpipe.schema.Block`s. A *client* only turns
`VLMRequest`s into strings (the embedded engine, a server, or a replay of
recorded answers). A new family (PaddleOCR-VL, a Qwen2.5-VL OCR model) is a
new folder registered in `_FAMILIES`, not a fork of the flow in `vlm_page.py`.

Lifecycle of one page (driven by `vlm_page.py`):
  family.layout_request(render) -> client -> family.parse_layout(answer)
  -> family.block_request(block, render) per block -> client
  -> family.fill_block(block, answer) -> family.assemble(blocks, page) -> Blocks
"""
from __future__ import annotations

import hashlib
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from PIL import Image

from docpipe.schema import Block

KINDS = ("layout", "text", "table", "equation")


@dataclass(eq=False)
class VLMRequest:
    """One generation: an image and the user-turn text that follows it."""

    image: Image.Image  # RGB image exactly as the model must see it (already resized/padded)
    prompt: str  # user-turn text after the image, e.g. "\nLayout Detection:" (no chat template)
    sampling: dict  # SamplingParams-like fields: temperature, top_k, presence_penalty, ... max_tokens
    kind: str  # layout | text | table | equation: what the answer is parsed as

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"VLMRequest.kind must be one of {KINDS}, got {self.kind!r}")

    @cached_property
    def key(self) -> str:
        """Stable content key: sha256 of the image (mode, size, raw pixels) and the prompt.

        Raw pixels rather than an encoded PNG, so the key does not depend on
        the zlib version; mode and size are hashed so equal bytes of different
        shapes cannot collide."""
        h = hashlib.sha256()
        h.update(f"{self.image.mode}:{self.image.width}x{self.image.height}\0".encode())
        h.update(self.image.tobytes())
        h.update(b"\0" + self.prompt.encode("utf-8"))
        return h.hexdigest()


class VLMClient(Protocol):
    """Anything that answers a batch of requests, one decoded string each, in order.

    Contract: the prompt is `family.chat_prompt(request.prompt)` with
    `request.image` for its one image placeholder; sampling is
    `request.sampling`; the answer is decoded WITH special tokens kept (the
    layout grammar is made of them: `<|box_start|>`, `<|ref_start|>`, ...),
    only the end-of-turn token (`<|im_end|>`, `<|endoftext|>`) removed."""

    def generate(self, requests: list[VLMRequest]) -> list[str]: ...


@dataclass
class LayoutBlock:
    """A block of the layout answer, family-neutral, filled in as the page proceeds."""

    type: str  # MinerU layout type (text, title, table, image, ...; unknown when not recognised)
    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions 0..1 of the page
    angle: int = 0  # degrees the content is rotated on the page: 0, 90, 180, 270
    content: str = ""  # cleaned answer (Markdown text, LaTeX, OTSL-derived HTML, ...)
    source: str = "vlm"  # vlm | text_layer (hybrid: taken from the PDF text layer)
    is_loop: bool = False  # the answer ended in a runaway repetition and was truncated
    crop_png: bytes | None = None  # PNG of the crop for image/table blocks (saved by the writer)
    extra: dict = field(default_factory=dict)  # family-specific results (e.g. table Markdown)


class ModelFamily(ABC):
    """What the flow in `vlm_page.py` needs from a VLM family."""

    name: str = ""

    @abstractmethod
    def chat_prompt(self, prompt: str) -> str:
        """The full chat-templated prompt text for one request (image placeholder included)."""

    @abstractmethod
    def layout_request(self, render: Image.Image) -> VLMRequest:
        """Step 1 request for a page render."""

    @abstractmethod
    def parse_layout(self, answer: str) -> list[LayoutBlock]:
        """Blocks of a layout answer, in reading order."""

    @abstractmethod
    def block_request(self, block: LayoutBlock, render: Image.Image) -> VLMRequest | None:
        """Step 2 request for one block; None when the block is not recognised (containers)."""

    @abstractmethod
    def block_crop_png(self, block: LayoutBlock, render: Image.Image) -> bytes | None:
        """PNG bytes to keep for this block (image/table crops), or None."""

    @abstractmethod
    def fill_block(self, block: LayoutBlock, answer: str) -> None:
        """Post-process a step 2 answer into `block.content` (and `is_loop`, `extra`)."""

    @abstractmethod
    def assemble(self, blocks: list[LayoutBlock], width_pt: float, height_pt: float) -> list[Block]:
        """The page's schema Blocks in reading order (captions attached, levels set)."""


# name -> "module:Class"; imported on first use so an unused family costs nothing.
_FAMILIES: dict[str, str] = {
    "mineru25": "docpipe.models.mineru25.family:MinerU25Family",
}


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def get_family(name: str) -> ModelFamily:
    """An instance of the family registered as `name`."""
    try:
        target = _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {family_names()}") from None
    module_name, cls_name = target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)()
