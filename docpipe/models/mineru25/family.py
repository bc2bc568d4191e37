"""MinerU2.5 (Qwen2-VL based, two-step layout + recognition) as a ModelFamily.

Stateless: one instance serves any number of pages and threads.
"""
from __future__ import annotations

import re

from PIL import Image

from docpipe.models.base import LayoutBlock, ModelFamily, VLMRequest
from docpipe.models.loops import truncate_loop
from docpipe.models.mineru25 import images, latex, otsl, prompts
from docpipe.models.mineru25.assemble import assemble
from docpipe.models.mineru25.layout_parser import parse_layout
from docpipe.models.mineru25.sampling import sampling_for
from docpipe.schema import Block

NOT_RECOGNISED = frozenset({"image", "list", "equation_block"})  # containers / pictures
CROP_KEPT = frozenset({"image", "table"})  # crops saved next to the Markdown
_FENCE_RE = re.compile(r"^```[\w+-]*\n(.*?)\n?```$", re.DOTALL)


class MinerU25Family(ModelFamily):
    name = "mineru25"

    def chat_prompt(self, prompt: str) -> str:
        return prompts.chat_prompt(prompt)

    def layout_request(self, render: Image.Image) -> VLMRequest:
        image = images.layout_image(render)
        return VLMRequest(image, prompts.LAYOUT_PROMPT,
                          sampling_for("layout", image.width, image.height), "layout")

    def parse_layout(self, answer: str) -> list[LayoutBlock]:
        return parse_layout(answer)

    def block_request(self, block: LayoutBlock, render: Image.Image) -> VLMRequest | None:
        if block.type in NOT_RECOGNISED:
            return None
        image = images.block_image(render, block.bbox, block.angle)
        prompt, kind = prompts.prompt_for(block.type)
        return VLMRequest(image, prompt, sampling_for(kind, image.width, image.height), kind)

    def block_crop_png(self, block: LayoutBlock, render: Image.Image) -> bytes | None:
        if block.type not in CROP_KEPT:
            return None
        return images.png_bytes(images.page_crop(render, block.bbox))

    def fill_block(self, block: LayoutBlock, answer: str) -> None:
        check = truncate_loop(answer.strip())
        block.is_loop = check.is_loop
        text = check.text
        if block.type == "table":
            html, markdown = otsl.convert(text)
            block.extra.update(html=html, markdown=markdown)
            block.content = text
        elif block.type == "equation":
            block.content = latex.clean_equation(text)
        elif block.type in ("code", "algorithm"):
            m = _FENCE_RE.match(text)
            block.content = m.group(1) if m else text
        else:
            block.content = latex.inline_math(text)

    def assemble(self, blocks: list[LayoutBlock], width_pt: float, height_pt: float) -> list[Block]:
        return assemble(blocks, width_pt, height_pt)
