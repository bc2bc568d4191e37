"""Tables of a born-digital page via PyMuPDF's table finder, gated by a cheap
look at the page's vector rules because the finder costs 50-300 ms a page.

Contract: `find_table_blocks(page)` -> list of `table` Blocks, each with
`html` (always, rowspan/colspan when cells span) and `markdown_table` (only
when no cell spans), `text` (cells as plain text). Cell texts are taken from the page's
TextLines (by line centre), not from the finder's own extraction.

Gate (`table_regions`): horizontal rules (lines, thin rectangles, rectangle
edges) are merged into runs per y; a table needs at least `_MIN_RULES` runs
at distinct y whose x-spans agree, and text lines side by side inside.
Only those regions go to the finder (one call, `clip` to their union), and on PyMuPDF >= 1.27 with its layout model off (`use_layout`),
which is what makes it slow and is not what we need here.
"""
from __future__ import annotations

import html
import inspect

import pymupdf

# Without its layout package PyMuPDF prints an install hint on the first table
# search; docpipe skips that package on purpose (see docpipe/__init__.py).
getattr(pymupdf, "no_recommend_layout", lambda: None)()

from docpipe.schema import Block
from docpipe.text.joining import join_lines
from docpipe.text.lines import TextLine

_MIN_RULES = 3  # distinct horizontal rules (top, header separator, bottom) a table needs
_MIN_RULE_PT = 20.0  # shorter strokes are glyph parts, underlines of words, ticks
_Y_TOL_PT = 1.5  # strokes this close in y are one rule
_CLIP_PAD_PT = 4.0
_MIN_CELL_LINES = 4  # text lines a ruled region needs to be worth the finder


def _finder_kwargs() -> dict:
    # Page.find_tables forwards **kwargs to pymupdf.table.find_tables; older
    # releases have no `use_layout` and would reject it.
    from pymupdf import table as finder
    params = inspect.signature(finder.find_tables).parameters
    return {"use_layout": False} if "use_layout" in params else {}


_FINDER_KWARGS = _finder_kwargs()


def _h_strokes(page: "pymupdf.Page") -> list[tuple[float, float, float]]:
    """(y, x0, x1) of horizontal strokes, in the page as displayed: drawings
    come unrotated, so segments are rotated before being classified."""
    rot = page.rotation_matrix
    segs = []
    for path in page.get_cdrawings():
        for item in path["items"]:
            if item[0] == "l":
                segs.append((item[1], item[2]))
            elif item[0] == "re":
                x0, y0, x1, y1 = item[1]
                segs += [((x0, y0), (x1, y0)), ((x0, y1), (x1, y1)), ((x0, y0), (x0, y1)), ((x1, y0), (x1, y1))]
    out = []
    for a, b in segs:
        if page.rotation:
            a, b = pymupdf.Point(a) * rot, pymupdf.Point(b) * rot
        (ax, ay), (bx, by) = a, b
        if abs(ay - by) < 1 and abs(ax - bx) >= _MIN_RULE_PT:
            out.append((ay, min(ax, bx), max(ax, bx)))
    return out


def _runs(strokes: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Strokes at one y that touch are one rule (tables often draw one per cell)."""
    runs: list[list[float]] = []
    for y, x0, x1 in sorted(strokes):
        host = None
        for r in reversed(runs):
            if y - r[0] > _Y_TOL_PT:
                break
            if x0 <= r[2] + 3 and x1 >= r[1] - 3:
                host = r
                break
        if host is None:
            runs.append([y, x0, x1])
        else:
            host[1], host[2] = min(host[1], x0), max(host[2], x1)
    return [tuple(r) for r in runs]


def table_regions(page: "pymupdf.Page") -> list["pymupdf.Rect"]:
    runs = _runs(_h_strokes(page))
    regions: list[pymupdf.Rect] = []
    for y, x0, x1 in runs:
        if any(r.y0 - 1 <= y <= r.y1 + 1 and r.x0 - 1 <= (x0 + x1) / 2 <= r.x1 + 1 for r in regions):
            continue  # a rule of a region already found
        width = x1 - x0
        mates = [r for r in runs
                 if min(x1, r[2]) - max(x0, r[1]) >= 0.8 * max(width, r[2] - r[1])]
        if len({round(r[0]) for r in mates}) >= _MIN_RULES:
            rect = pymupdf.Rect(min(r[1] for r in mates), min(r[0] for r in mates),
                                max(r[2] for r in mates), max(r[0] for r in mates))
            regions.append(rect)
    return regions


def find_table_blocks(page: "pymupdf.Page", lines: list[TextLine]) -> list[Block]:
    """Tables of the page; cell texts come from `lines` (the page's text
    lines, displayed page space), which is robust on rotated pages."""
    regions = [r for r in table_regions(page) if _has_grid_text(r, lines)]
    if not regions:
        return []
    # One finder call: each call builds its own text page of the whole page.
    clip = pymupdf.Rect(regions[0])
    for r in regions[1:]:
        clip |= r
    clip = (clip + (-_CLIP_PAD_PT, -_CLIP_PAD_PT, _CLIP_PAD_PT, _CLIP_PAD_PT)) & page.rect
    blocks: list[Block] = []
    for tab in page.find_tables(clip=clip, **_FINDER_KWARGS).tables:
        block = table_block(tab, lines)
        if block is not None and not any(_overlaps(block.bbox, b.bbox) for b in blocks):
            blocks.append(block)
    return blocks


def _has_grid_text(region: "pymupdf.Rect", lines: list[TextLine]) -> bool:
    """Ruled regions worth the finder: several text lines, some side by side
    in one row (a frame around a paragraph or a figure's strokes are not)."""
    inside = [ln.bbox for ln in lines
              if region.x0 - 2 <= (ln.bbox[0] + ln.bbox[2]) / 2 <= region.x1 + 2
              and region.y0 - 2 <= (ln.bbox[1] + ln.bbox[3]) / 2 <= region.y1 + 2]
    if len(inside) < _MIN_CELL_LINES:
        return False
    inside.sort(key=lambda b: b[0])
    for i, a in enumerate(inside):
        for b in inside[i + 1:]:
            if b[0] >= a[2] and min(a[3], b[3]) - max(a[1], b[1]) > 0.5 * (a[3] - a[1]):
                return True
    return False


def _overlaps(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def table_block(tab, lines: list[TextLine]) -> Block | None:
    """A finder table -> Block, or None when it is not a real table (a frame
    around text: one row or one column, or nearly all cells empty)."""
    grid = grid_cells(tab, lines)
    if len(grid) < 2 or max(len(r) for r in grid) < 2:
        return None
    texts = [c[0] for r in grid for c in r]
    if sum(bool(t) for t in texts) < 0.3 * len(texts):
        return None
    spans = any(c[1] > 1 or c[2] > 1 for r in grid for c in r)
    block = Block(type="table", bbox=tuple(tab.bbox), html=to_html(grid),
                  text="\n".join(" ".join(c[0] for c in r if c[0]) for r in grid))
    if not spans:
        block.markdown_table = to_markdown([[c[0] for c in r] for r in grid])
    return block


def grid_cells(tab, lines: list[TextLine]) -> list[list[tuple[str, int, int]]]:
    """Rows of (text, rowspan, colspan); cells covered by a span are left out."""
    boxes = [row.cells for row in tab.rows]
    xs = sorted({round(c[0], 1) for r in boxes for c in r if c})
    ys = sorted({round(c[1], 1) for r in boxes for c in r if c})
    taken = [False] * len(lines)
    out = []
    for cells in boxes:
        row = []
        for cell in cells:
            if cell is None:
                continue
            colspan = sum(cell[0] - 0.5 <= x < cell[2] - 0.5 for x in xs) or 1
            rowspan = sum(cell[1] - 0.5 <= y < cell[3] - 0.5 for y in ys) or 1
            row.append((_cell_text(cell, lines, taken), rowspan, colspan))
        out.append(row)
    return [r for r in out if r]


def _cell_text(cell, lines: list[TextLine], taken: list[bool]) -> str:
    parts = []
    for i, ln in enumerate(lines):
        cx, cy = (ln.bbox[0] + ln.bbox[2]) / 2, (ln.bbox[1] + ln.bbox[3]) / 2
        if not taken[i] and cell[0] <= cx <= cell[2] and cell[1] <= cy <= cell[3]:
            taken[i] = True
            parts.append(ln)
    parts.sort(key=lambda ln: (round(ln.bbox[1]), ln.bbox[0]))
    return join_lines([ln.text for ln in parts])


def to_html(grid: list[list[tuple[str, int, int]]]) -> str:
    parts = ["<table>"]
    for row in grid:
        parts.append("<tr>")
        for text, rowspan, colspan in row:
            attrs = (f' rowspan="{rowspan}"' if rowspan > 1 else "") + (f' colspan="{colspan}"' if colspan > 1 else "")
            parts.append(f"<td{attrs}>{html.escape(text)}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    return "".join(parts)


def to_markdown(rows: list[list[str]]) -> str:
    width = max(len(r) for r in rows)
    cells = [[c.replace("|", "\\|") for c in r] + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
    return "\n".join(lines)
