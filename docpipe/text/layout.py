"""TextLines of one page -> paragraph / title / list / code Blocks in reading
order. Independent of PyMuPDF: the text layer and OCR both feed it.

Stable entry point:

    layout_lines(lines, page_width, page_height, heading_levels=None,
                 extra_blocks=(), source="text_layer") -> list[Block]

- `lines`: `TextLine`s in PDF points (top-left origin), any order; lines that
  belong to tables, images or page furniture should be left out (pass those
  as `extra_blocks`, which are ordered together with the text).
- `heading_levels`: document-wide `HeadingLevels` (headings.py); when None
  the statistics of these lines alone are used (e.g. a lone OCR page).
- returns Blocks in reading order (reading_order.order over block boxes,
  columns included); consecutive list items are one `list` Block whose text
  holds one Markdown item per line.

Steps: merge fragments of one visual line -> rule-less tables (grid.py) ->
group lines into paragraphs
(vertical gap, horizontal overlap, same style, list markers start items) ->
classify (title / list / code / text) -> order -> merge list runs.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from docpipe.schema import Block
from docpipe.text import joining
from docpipe.text.grid import split_grids
from docpipe.text.headings import FontStats, HeadingLevels
from docpipe.text.lines import TextLine
from docpipe.text.reading_order import order

_PARA_GAP = 0.75  # max vertical gap between lines of one paragraph, in font sizes
_FRAGMENT_GAP = 0.9  # max horizontal gap joining fragments of one visual line, in font sizes


@dataclass
class _Para:
    lines: list[TextLine] = field(default_factory=list)
    x0: float = 1e9
    x1: float = -1e9

    def add(self, ln: TextLine) -> None:
        self.lines.append(ln)
        self.x0, self.x1 = min(self.x0, ln.bbox[0]), max(self.x1, ln.bbox[2])

    @property
    def last(self) -> TextLine:
        return self.lines[-1]

    @property
    def bbox(self):
        return (self.x0, min(ln.bbox[1] for ln in self.lines), self.x1,
                max(ln.bbox[3] for ln in self.lines))


def layout_lines(lines: Sequence[TextLine], page_width: float, page_height: float,
                 heading_levels: HeadingLevels | None = None,
                 extra_blocks: Iterable[Block] = (), source: str = "text_layer") -> list[Block]:
    if heading_levels is None:
        stats = FontStats()
        stats.add(list(lines))
        heading_levels = stats.levels()
    grids, rest = split_grids(merge_fragments(lines), page_width)
    paras = group_paragraphs(rest)
    blocks = [classify(p, heading_levels, source) for p in paras]
    blocks += grids + list(extra_blocks)
    ordered = [blocks[i] for i in order([b.bbox for b in blocks], page_width, page_height)]
    return merge_list_runs(ordered)


def merge_fragments(lines: Sequence[TextLine]) -> list[TextLine]:
    """Join pieces of one visual line (same baseline band, small gap, same
    size); right-to-left rows are joined right piece first."""
    chains: list[list[TextLine]] = []
    by_band: dict[int, list[list[TextLine]]] = {}  # 4-pt bands of line centres -> chains
    for ln in sorted(lines, key=lambda ln: ln.bbox[0]):
        band = int((ln.bbox[1] + ln.bbox[3]) / 8)
        near = [c for k in (band - 1, band, band + 1) for c in by_band.get(k, ())]
        host = next((c for c in reversed(near) if _same_row(c[-1], ln)), None)
        if host is None:
            host = [ln]
            chains.append(host)
            by_band.setdefault(band, []).append(host)
        else:
            host.append(ln)
    out = []
    for chain in chains:
        if len(chain) == 1:
            out.append(chain[0])
            continue
        if joining.is_rtl("".join(ln.text for ln in chain)):
            chain = chain[::-1]
        first = chain[0]
        out.append(replace(  # a new line: the caller's lines stay as given
            first, text=" ".join(ln.text for ln in chain),
            bbox=(min(ln.bbox[0] for ln in chain), min(ln.bbox[1] for ln in chain),
                  max(ln.bbox[2] for ln in chain), max(ln.bbox[3] for ln in chain))))
    return sorted(out, key=lambda ln: (ln.bbox[1], ln.bbox[0]))


def _same_row(a: TextLine, b: TextLine) -> bool:
    h = min(a.bbox[3] - a.bbox[1], b.bbox[3] - b.bbox[1])
    overlap = min(a.bbox[3], b.bbox[3]) - max(a.bbox[1], b.bbox[1])
    gap = b.bbox[0] - a.bbox[2]
    size = max(a.size_pt, b.size_pt)
    # A lone marker glyph (bullet, number) may sit further from its text.
    if joining.is_marker_only(a.text):  # marker glyphs come in their own font and size
        return overlap > 0.5 * h and -0.5 * size < gap < 2.5 * size
    return overlap > 0.6 * h and -0.5 * size < gap < _FRAGMENT_GAP * size and abs(a.size_pt - b.size_pt) <= 0.25 * size


def group_paragraphs(lines: Sequence[TextLine]) -> list[_Para]:
    paras: list[_Para] = []
    active: list[_Para] = []
    for ln in lines:
        size = ln.size_pt
        active = [p for p in active if ln.bbox[1] - p.last.bbox[3] < 3 * size]
        best, best_gap = None, None
        if not joining.starts_item(ln.text):
            for p in active:
                gap = ln.bbox[1] - p.last.bbox[3]
                if _continues(p, ln, gap) and (best_gap is None or gap < best_gap):
                    best, best_gap = p, gap
        if best is None:
            best = _Para()
            paras.append(best)
            active.append(best)
        best.add(ln)
    return paras


def _continues(p: _Para, ln: TextLine, gap: float) -> bool:
    prev = p.last
    size = max(prev.size_pt, ln.size_pt)
    if not -0.3 * size < gap < _PARA_GAP * size:
        return False
    if abs(prev.size_pt - ln.size_pt) > 0.12 * size or prev.is_mono != ln.is_mono:
        return False
    if (prev.is_bold != ln.is_bold or prev.is_italic != ln.is_italic) and not prev.is_mono:
        return False  # a style change: run-in heading, caption, quote
    overlap = min(p.x1, ln.bbox[2]) - max(p.x0, ln.bbox[0])
    if overlap < 0.5 * min(p.x1 - p.x0, ln.bbox[2] - ln.bbox[0]):
        return False
    # A list item goes on only with lines that start right of its marker: body text
    # back at the column's margin ends it (hanging indents keep continuations right).
    if joining.starts_item(p.lines[0].text) and ln.bbox[0] < p.lines[0].bbox[0] - 0.5 * size:
        return False
    # A line ending a sentence well short of the next line ends its paragraph.
    if prev.bbox[2] < ln.bbox[2] - 4 * size and joining.ends_sentence(prev.text) and not prev.is_mono:
        return False
    return True


def classify(p: _Para, levels: HeadingLevels, source: str) -> Block:
    lines = p.lines
    first = lines[0]
    text = joining.join_lines([ln.text for ln in lines])
    block = Block(type="text", bbox=p.bbox, source=source,
                  score=min(ln.score for ln in lines))
    if all(ln.is_mono for ln in lines):
        block.type, block.text = "code", "\n".join(ln.text for ln in lines)
        return block
    if joining.starts_item(first.text):
        block.type, block.text = "list", joining.list_item(text)
        return block
    block.text = text
    size = sum(ln.size_pt for ln in lines) / len(lines)
    # Emphasis marks body-size headings: bold, or one short italic line.
    emphasized = all(ln.is_bold for ln in lines) or (len(lines) == 1 and first.is_italic and len(text) < 80)
    if len(lines) <= 3 and len(text) < 200 and not text.endswith((".", ",", ";")):
        lv = levels.level(size, emphasized)
        if lv:
            block.type, block.level = "title", lv
    return block


def merge_list_runs(blocks: list[Block]) -> list[Block]:
    """Consecutive list items -> one list Block (one Markdown item per line,
    nested by indentation)."""
    out: list[Block] = []
    run: list[Block] = []
    for b in blocks + [None]:
        if b is not None and b.type == "list":
            run.append(b)
            continue
        if run:
            out.append(_list_block(run))
            run = []
        if b is not None:
            out.append(b)
    return out


def _list_block(items: list[Block]) -> Block:
    unit = 12.0  # points of indentation per nesting level
    left, prev, lines = min(b.bbox[0] for b in items), None, []
    for b in items:
        if prev is not None and min(prev.bbox[2], b.bbox[2]) <= max(prev.bbox[0], b.bbox[0]):
            # the list went on in another column: measure indents from there, same depth
            left = b.bbox[0] - depth * unit
        depth = max(0, min(3, int((b.bbox[0] - left) / unit)))
        lines.append("  " * depth + b.text)
        prev = b
    bbox = (min(b.bbox[0] for b in items), min(b.bbox[1] for b in items), max(b.bbox[2] for b in items),
            max(b.bbox[3] for b in items))
    return Block(type="list", bbox=bbox, text="\n".join(lines), source=items[0].source,
                 score=min(b.score for b in items))
