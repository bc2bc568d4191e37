"""Layout of one OCR'd page: `TextLine`s from `OcrEngine.read_page` ->
Blocks in reading order (`page_blocks`).

Steps: furniture (header / footer bands that a gap separates from the body,
page numbers; found by geometry on one page, since a scan offers no
cross-page repeats) -> paragraphs (line gap measured on the page, indents
and short last lines open / close them, table cells never chain) -> tables
(grids of short cells, read row by row) -> order of paragraphs and tables by
`reading_order.order` -> text joined (CJK without spaces, hyphens rejoined).
Why not layout.py: OCR sizes are estimates that jitter line to line, CJK
line gaps exceed its paragraph gap, and it would read tables column-wise.
""" 
from __future__ import annotations

import re
from dataclasses import dataclass

from docpipe.schema import Block
from docpipe.text.joining import is_cjk
from docpipe.text.lines import TextLine
from docpipe.text.reading_order import order

_LONG = 12.0  # a line at least this many heights wide is running text, not a cell
_INDENT = 0.8  # a first line indented by this many heights opens a paragraph
_SHORT = 2.0  # a line ending this many heights short of its paragraph's right edge ends it
_CELL_GAP = 0.2  # a short line closer than this share of the page width on the left makes a table row
_TABLE_GAP = 0.2  # cells of one table row are closer than this share of the page width
_CELL_GAP_H = 6.0  # ... and closer than this many line heights (a gutter is wider)


@dataclass
class _Group:
    """Lines of one paragraph, top to bottom."""

    lines: list

    @property
    def bbox(self):
        b = [ln.bbox for ln in self.lines]
        return (min(x[0] for x in b), min(x[1] for x in b), max(x[2] for x in b), max(x[3] for x in b))

    @property
    def height(self) -> float:
        return _median([ln.bbox[3] - ln.bbox[1] for ln in self.lines])


def _median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else 0.0


def _h(ln: TextLine) -> float:
    return ln.bbox[3] - ln.bbox[1]


def _is_long(ln: TextLine) -> bool:
    return ln.bbox[2] - ln.bbox[0] >= _LONG * _h(ln)


def _in_table_row(lines: list[TextLine], page_width: float) -> set[int]:
    """ids of lines with a short cell close on their left in the same row:
    value columns of a table, which must not chain into paragraphs."""
    out = set()
    for ln in lines:
        for o in lines:
            ov = min(ln.bbox[3], o.bbox[3]) - max(ln.bbox[1], o.bbox[1])
            gap = ln.bbox[0] - o.bbox[2]
            if o is not ln and ov > 0.5 * min(_h(ln), _h(o)) and 0 <= gap < _CELL_GAP * page_width \
                    and not _is_long(o):
                out.add(id(ln))
                break
    return out


def group_paragraphs(lines: list[TextLine], line_gap: float, page_width: float) -> list[_Group]:
    """Lines -> paragraphs: a line continues the paragraph right above it when
    the vertical gap is at most `line_gap` (+ slack), they overlap
    horizontally, heights agree, one of the two is running text and neither
    is a table value (so table cells never chain), and no indent or short
    last line says otherwise."""
    cells = _in_table_row(lines, page_width)
    groups: list[_Group] = []
    for ln in sorted(lines, key=lambda ln: (ln.bbox[1], ln.bbox[0])):
        h = _h(ln)
        best = None
        for g in groups:
            last = g.lines[-1]
            gap = ln.bbox[1] - last.bbox[3]
            if not -0.5 * h < gap <= line_gap + 0.35 * h:
                continue
            x0, _, x1, _ = g.bbox
            overlap = min(x1, ln.bbox[2]) - max(x0, ln.bbox[0])
            if overlap < 0.5 * min(x1 - x0, ln.bbox[2] - ln.bbox[0]):
                continue
            if not 0.75 < h / _h(last) < 1.33 or not (_is_long(ln) or _is_long(last)):
                continue
            if id(ln) in cells or id(last) in cells:
                continue
            if ln.bbox[0] > x0 + _INDENT * h or last.bbox[2] < max(x1, ln.bbox[2]) - _SHORT * h:
                continue
            best = g
        if best is None:
            groups.append(_Group([ln]))
        else:
            best.lines.append(ln)
    return groups


def _line_gap(lines: list[TextLine]) -> float:
    """Typical vertical gap between consecutive lines of running text."""
    longs = sorted((ln for ln in lines if _is_long(ln)), key=lambda ln: ln.bbox[1])
    gaps = []
    for i, a in enumerate(longs):
        for b in longs[i + 1:]:
            if b.bbox[1] > a.bbox[3] + 3 * _h(a):
                break
            if min(a.bbox[2], b.bbox[2]) - max(a.bbox[0], b.bbox[0]) > 0.5 * (a.bbox[2] - a.bbox[0]) \
                    and b.bbox[1] > a.bbox[1] + 0.5 * _h(a):
                gaps.append(b.bbox[1] - a.bbox[3])
                break
    return max(0.0, _median(gaps)) if gaps else 0.5 * _median([_h(ln) for ln in lines])


def find_tables(groups: list[_Group], page_width: float) -> list[list[_Group]]:
    """Grids of short single-line cells: cells link to row neighbours (same
    row, within `_TABLE_GAP` of the page width) and to the cell right below;
    a linked set with at least two rows of two cells is a table. Paragraphs
    whose centre lies inside a table's box are cells spanning rows."""
    cand = [i for i, g in enumerate(groups) if len(g.lines) == 1 and not _is_long(g.lines[0])]
    parent = {i: i for i in cand}

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    multi_rows = {i: 0 for i in cand}
    for n, i in enumerate(cand):
        a = groups[i].bbox
        for j in cand[n + 1:]:
            b = groups[j].bbox
            h = min(a[3] - a[1], b[3] - b[1])
            y_ov = min(a[3], b[3]) - max(a[1], b[1])
            x_ov = min(a[2], b[2]) - max(a[0], b[0])
            x_gap = max(a[0], b[0]) - min(a[2], b[2])
            y_gap = max(a[1], b[1]) - min(a[3], b[3])
            same_row = y_ov > 0.5 * h and x_gap < min(_TABLE_GAP * page_width, _CELL_GAP_H * h)
            if same_row:
                multi_rows[i] += 1
                multi_rows[j] += 1
            if same_row or (x_ov > 0 and y_gap < h):
                parent[root(j)] = root(i)
    comps: dict[int, list[int]] = {}
    for i in cand:
        comps.setdefault(root(i), []).append(i)
    tables = []
    for members in comps.values():
        if sum(multi_rows[i] > 0 for i in members) < 4:
            continue
        box = _Group([groups[i].lines[0] for i in members]).bbox
        inside = [i for i, g in enumerate(groups) if i not in parent and _centre_in(g.bbox, box)]
        tables.append([groups[i] for i in members + inside])
    return tables


def _centre_in(b, box) -> bool:
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def _core(g: _Group):
    """A paragraph's box with the detector's vertical padding trimmed, so that
    rows of a table leave gaps for the XY-cut."""
    x0, y0, x1, y1 = g.bbox
    s = 0.25 * g.height
    return (x0, y0 + s, x1, y1 - s)


def order_groups(groups: list[_Group], page_width: float, page_height: float) -> list[_Group]:
    """Paragraphs and tables in reading order (reading_order.order over their
    boxes); a table is read row by row."""
    tables = find_tables(groups, page_width)
    in_table = {id(g) for t in tables for g in t}
    units = [[g] for g in groups if id(g) not in in_table] + tables
    boxes = [_Group([ln for g in u for ln in g.lines]).bbox for u in units]
    out = []
    for k in order(boxes, page_width, page_height):
        out += _rows(units[k]) if len(units[k]) > 1 else units[k]
    return out


def _rows(st: list[_Group]) -> list[_Group]:
    """Row-major order of a stack (table rows read across): single-line members
    that overlap vertically (padding trimmed) form a row; a multi-line member
    (a cell spanning rows, a paragraph) joins the row its top falls in."""
    rows: list[list] = []  # [y0, y1, members]
    for g in sorted(st, key=lambda g: _core(g)[1]):
        _, y0, _, y1 = _core(g)
        if rows and y0 < rows[-1][1]:
            rows[-1][2].append(g)
            if len(g.lines) == 1:
                rows[-1][1] = max(rows[-1][1], y1)
        else:
            rows.append([y0, y1 if len(g.lines) == 1 else y0 + g.height, [g]])
    return [g for r in rows for g in sorted(r[2], key=lambda g: g.bbox[0])]


def join_text(lines: list[str]) -> str:
    """Lines of one paragraph -> one string: CJK joined without a space,
    hyphenated Latin words rejoined, others with one space."""
    out = ""
    for s in lines:
        if not out:
            out = s
        elif out[-1] == "-" and len(out) > 1 and out[-2].islower() and s[0].islower():
            out = out[:-1] + s
        elif is_cjk(out[-1]) or is_cjk(s[0]):
            out += s
        else:
            out += " " + s
    return out


def page_blocks(lines: list[TextLine], page_width: float, page_height: float) -> list[Block]:
    """OCR lines of one page -> Blocks in reading order; furniture last."""
    body, furniture = split_furniture(lines, page_width, page_height)
    groups = group_paragraphs(body, _line_gap(body), page_width)
    blocks = []
    for g in order_groups(groups, page_width, page_height):
        text = join_text([ln.text for ln in g.lines])
        blocks.append(Block(type="text", bbox=g.bbox, text=text, source="ocr",
                            score=min(ln.score for ln in g.lines)))
    return blocks + furniture


_PAGE_NUM_RE = re.compile(r"^\s*[-–—]?\s*(?:page\s*)?(\d{1,4}|[ivxlc]{1,6})\s*[-–—]?\s*$", re.I)
_MARGIN = 0.1  # header / footer bands: this share of the page height at top and bottom


def split_furniture(lines: list[TextLine], page_width: float, page_height: float):
    """(body lines, furniture Blocks): the bands of lines at the top / bottom
    of the page, inside the margin share, that a clear gap separates from the
    body; page numbers among them are typed as such."""
    if not lines:
        return [], []
    h = _median([_h(ln) for ln in lines])
    bands: list[list] = []  # [y0, y1, lines], top to bottom
    for ln in sorted(lines, key=lambda ln: ln.bbox[1]):
        if bands and ln.bbox[1] < bands[-1][1] + 0.5 * h:
            bands[-1][1] = max(bands[-1][1], ln.bbox[3])
            bands[-1][2].append(ln)
        else:
            bands.append([ln.bbox[1], ln.bbox[3], [ln]])
    top = [b for b in bands if b[1] <= _MARGIN * page_height]
    bottom = [b for b in bands if b[0] >= (1 - _MARGIN) * page_height]
    if len(top) + len(bottom) >= len(bands):
        return lines, []  # a page of only margin text: keep it as body
    furniture = [_furniture_block(ln, "header") for b in top for ln in b[2]]
    furniture += [_furniture_block(ln, "footer") for b in bottom for ln in b[2]]
    keep = {id(ln) for b in bands[len(top):len(bands) - len(bottom)] for ln in b[2]}
    return [ln for ln in lines if id(ln) in keep], furniture


def _furniture_block(ln: TextLine, kind: str) -> Block:
    if _PAGE_NUM_RE.match(ln.text):
        kind = "page_number"
    return Block(type=kind, bbox=ln.bbox, text=ln.text, source="ocr", score=ln.score)
