"""Tables drawn without rules (spreadsheets, aligned columns), found from
text geometry alone, so they work for the text layer and OCR alike.

Contract: `split_grids(lines, page_width)` -> (table Blocks, remaining lines).
A grid is a run of at least `_MIN_ROWS` consecutive rows, each holding two or
more short cells separated by wide gaps; the column count is the most common
cell count of its rows, column borders the median gaps of those rows, and
every cell goes to the column holding its centre. Prose in two columns (long
or justified lines) and lists side by side (slides) are not grids.
"""
from __future__ import annotations

from collections import Counter
from statistics import median

from docpipe.schema import Block
from docpipe.text.joining import starts_item
from docpipe.text.lines import TextLine
from docpipe.text.tables import to_html, to_markdown

_MIN_ROWS = 3  # header + two data rows
_CELL_GAP = 1.5  # min horizontal gap between cells of a row, in font sizes
_MAX_CELL_CHARS = 40  # a longer line is prose, not a cell
_MAX_MEDIAN_CHARS = 20  # a grid whose typical cell is longer is text in columns
_MAX_CELL_SHARE = 0.4  # a cell wider than this share of the page is prose
_ROW_GAP = 1.0  # max vertical gap between rows of one grid, in font sizes


def split_grids(lines: list[TextLine], page_width: float) -> tuple[list[Block], list[TextLine]]:
    rows = _rows(lines)
    tables: list[Block] = []
    used: set[int] = set()
    run: list[list[TextLine]] = []
    for row in rows + [None]:
        if row is not None and _is_cell_row(row, page_width) and (not run or _adjacent(run[-1], row)):
            run.append(row)
            continue
        if len(run) >= _MIN_ROWS and not _looks_like_columns_of_text(run, page_width):
            tables.append(_table(run))
            used.update(id(ln) for r in run for ln in r)
        run = [row] if row is not None and _is_cell_row(row, page_width) else []
    return tables, [ln for ln in lines if id(ln) not in used]


def _looks_like_columns_of_text(run: list[list[TextLine]], page_width: float) -> bool:
    """Side-by-side lists (slides) or justified prose columns, not a table."""
    cells = [ln for r in run for ln in r]
    if sum(starts_item(ln.text) for ln in cells) > 0.5 * len(cells):
        return True
    if median(len(ln.text) for ln in cells) > _MAX_MEDIAN_CHARS:
        return True  # cells are mostly short; wrapped prose lines are not
    for col in _columns(run):
        widths = [ln.bbox[2] - ln.bbox[0] for ln in col]
        top = max(widths)
        # Justified prose: wide lines of one width (numbers in a table are narrow).
        if len(col) >= _MIN_ROWS and top > 0.2 * page_width and sum(w > 0.9 * top for w in widths) >= 0.7 * len(col):
            return True
    return False


def _columns(run: list[list[TextLine]]) -> list[list[TextLine]]:
    cols: list[list[TextLine]] = []
    for ln in sorted((ln for r in run for ln in r), key=lambda ln: ln.bbox[0]):
        col = next((c for c in cols if ln.bbox[0] < max(x.bbox[2] for x in c) and ln.bbox[2] > min(x.bbox[0] for x in c)), None)
        if col is None:
            cols.append([ln])
        else:
            col.append(ln)
    return cols


def _rows(lines: list[TextLine]) -> list[list[TextLine]]:
    rows: list[list[TextLine]] = []
    for ln in sorted(lines, key=lambda ln: (ln.bbox[1] + ln.bbox[3]) / 2):
        cy = (ln.bbox[1] + ln.bbox[3]) / 2
        last = rows[-1] if rows else None
        if last and abs(cy - (last[0].bbox[1] + last[0].bbox[3]) / 2) < 0.35 * ln.size_pt:
            last.append(ln)
        else:
            rows.append([ln])
    return [sorted(r, key=lambda ln: ln.bbox[0]) for r in rows]


def _is_cell_row(row: list[TextLine], page_width: float) -> bool:
    if len(row) < 2:
        return False
    if any(len(ln.text) > _MAX_CELL_CHARS or ln.bbox[2] - ln.bbox[0] > _MAX_CELL_SHARE * page_width for ln in row):
        return False
    return all(b.bbox[0] - a.bbox[2] >= _CELL_GAP * a.size_pt for a, b in zip(row, row[1:]))


def _adjacent(upper: list[TextLine], lower: list[TextLine]) -> bool:
    gap = min(ln.bbox[1] for ln in lower) - max(ln.bbox[3] for ln in upper)
    return gap < _ROW_GAP * max(ln.size_pt for ln in upper)


def _table(run: list[list[TextLine]]) -> Block:
    ncol = Counter(len(r) for r in run).most_common(1)[0][0]
    borders = [median((r[i].bbox[2] + r[i + 1].bbox[0]) / 2 for r in run if len(r) == ncol)
               for i in range(ncol - 1)]
    grid = []
    for row in run:
        cells = [""] * ncol
        for ln in row:
            col = sum((ln.bbox[0] + ln.bbox[2]) / 2 > b for b in borders)
            cells[col] = (cells[col] + " " + ln.text).strip()
        grid.append(cells)
    boxes = [ln.bbox for r in run for ln in r]
    bbox = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    return Block(type="table", bbox=bbox, html=to_html([[(c, 1, 1) for c in r] for r in grid]),
                 markdown_table=to_markdown(grid), text="\n".join(" ".join(c for c in r if c) for r in grid))
