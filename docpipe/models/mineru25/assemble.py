"""Page assembly: filled MinerU2.5 layout blocks -> `docpipe.schema.Block`s.

Contract, in the layout's reading order:
  - bbox: page fractions -> PDF points of the page (the writers rescale);
  - titles get heading levels (`headings.py`);
  - captions and footnotes (image_/table_/code_caption, image_/table_footnote)
    attach to the nearest body of their kind (image; table; code/algorithm)
    and leave the flow; with no such body on the page they stay as text;
  - furniture (header, footer, page_number, aside_text, page_footnote) keeps
    its type, so the Markdown writer leaves it out and content_list keeps it;
  - equations carry display LaTeX (the writer adds `$$`);
  - image and table blocks carry their crop as PNG bytes in `Block.image`;
  - empty containers (list, equation_block) are dropped: their members are
    blocks of their own;
  - a block whose answer looped is kept, truncated, with score LOOP_SCORE.
"""
from __future__ import annotations

from docpipe.models.base import LayoutBlock
from docpipe.models.mineru25.headings import title_levels
from docpipe.schema import Block

LOOP_SCORE = 0.5  # confidence of a block whose answer was cut at a repetition loop
CONTAINERS = frozenset({"list", "equation_block"})
# caption/footnote type -> (body types it attaches to, Block field it goes into)
ATTACH = {
    "image_caption": (("image",), "captions"),
    "image_footnote": (("image",), "footnotes"),
    "table_caption": (("table",), "captions"),
    "table_footnote": (("table",), "footnotes"),
    "code_caption": (("code", "algorithm"), "captions"),
}

Box = tuple[float, float, float, float]


def box_gap(a: Box, b: Box) -> float:
    """Distance between two boxes' edges (0 when they touch or overlap)."""
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return (dx * dx + dy * dy) ** 0.5


def to_points(bbox: Box, width_pt: float, height_pt: float) -> Box:
    x0, y0, x1, y1 = bbox
    return (round(x0 * width_pt, 2), round(y0 * height_pt, 2),
            round(x1 * width_pt, 2), round(y1 * height_pt, 2))


def _block(lb: LayoutBlock, width_pt: float, height_pt: float) -> Block:
    b = Block(type=lb.type, bbox=to_points(lb.bbox, width_pt, height_pt), text=lb.content,
              rotation=lb.angle, source=lb.source, score=LOOP_SCORE if lb.is_loop else 1.0)
    if lb.type == "table":
        b.html = lb.extra.get("html", "")
        b.markdown_table = lb.extra.get("markdown", "")
        b.text = "" if b.html else lb.content  # unparsed answers stay visible as text
    if lb.type in ("image", "table"):
        b.image = lb.crop_png
    return b


def _attach(page: list[tuple[LayoutBlock, Block]]) -> list[Block]:
    """Move captions/footnotes onto their nearest body; return the remaining flow."""
    out: list[Block] = []
    for lb, block in page:
        rule = ATTACH.get(lb.type)
        if rule is None:
            out.append(block)
            continue
        bodies = [(box_gap(lb.bbox, other.bbox), i) for i, (other, _) in enumerate(page)
                  if other.type in rule[0]]
        if not bodies or not block.text.strip():
            if block.text.strip():
                out.append(block)  # nothing to attach to: keep the words in the flow
            continue
        _, i = min(bodies)
        getattr(page[i][1], rule[1]).append(block.text.strip())
    return out


def assemble(blocks: list[LayoutBlock], width_pt: float, height_pt: float) -> list[Block]:
    page = [(lb, _block(lb, width_pt, height_pt)) for lb in blocks
            if not (lb.type in CONTAINERS and not lb.content.strip())]
    titles = [(lb.content, lb.bbox) for lb, _ in page if lb.type == "title"]
    levels = iter(title_levels(titles))
    for lb, block in page:
        if lb.type == "title":
            block.text, block.level = next(levels)
    return _attach(page)
