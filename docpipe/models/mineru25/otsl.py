"""OTSL table answers -> HTML (with rowspan/colspan) and, when no cell spans,
a Markdown pipe table.

OTSL tokens, each starting a grid position; text after a token belongs to it:
  <fcel> filled cell   <ecel> empty cell   <nl> end of row
  <lcel> merged with the cell on its left   <ucel> merged with the cell above
  <xcel> merged both ways (interior of a 2-D span)
Each position is owned by an anchor (fcel/ecel); merge tokens take the owner
of their left (lcel) or upper (ucel, xcel) neighbour, so a span is the box of
the positions its anchor owns. Short rows are padded with empty cells; a
merge token with nothing to merge into becomes a cell of its own; text after
a merge token is appended to the cell it merges into (never dropped).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

_TOKEN_RE = re.compile(r"<(fcel|ecel|lcel|ucel|xcel|nl)>")


@dataclass
class Cell:
    text: str  # stripped cell text, not escaped
    row: int  # first row, 0-based
    col: int  # first column, 0-based
    row_span: int = 1  # rows covered
    col_span: int = 1  # columns covered


@dataclass
class Table:
    cells: list[Cell]  # anchors in row-major order of their first position
    num_rows: int
    num_cols: int

    @property
    def has_spans(self) -> bool:
        return any(c.row_span > 1 or c.col_span > 1 for c in self.cells)


def _rows(otsl: str) -> list[list[tuple[str, str]]]:
    """(token, text) per position, per row; empty rows dropped."""
    parts = _TOKEN_RE.split(otsl)
    rows: list[list[tuple[str, str]]] = [[]]
    # parts = [before, tok, text, tok, text, ...]; text before the first token is noise.
    for i in range(1, len(parts), 2):
        tok, text = parts[i], parts[i + 1]
        if tok == "nl":
            rows.append([])
        else:
            rows[-1].append((tok, text))
    return [r for r in rows if r]


def parse_otsl(otsl: str) -> Table:
    rows = _rows(otsl)
    num_cols = max((len(r) for r in rows), default=0)
    owner: dict[tuple[int, int], Cell] = {}
    cells: list[Cell] = []
    for r, row in enumerate(rows):
        row = row + [("ecel", "")] * (num_cols - len(row))
        for c, (tok, text) in enumerate(row):
            left, up = owner.get((r, c - 1)), owner.get((r - 1, c))
            target = {"lcel": left, "ucel": up, "xcel": up or left}.get(tok)
            if target is None:
                target = Cell(text.strip(), r, c)
                cells.append(target)
            elif text.strip():  # text after a merge token is malformed, but still content
                target.text = f"{target.text} {text.strip()}".strip()
            owner[(r, c)] = target
            target.row_span = max(target.row_span, r - target.row + 1)
            target.col_span = max(target.col_span, c - target.col + 1)
    return Table(cells, len(rows), num_cols)


def to_html(table: Table) -> str:
    parts = ["<table>"]
    by_row: dict[int, list[Cell]] = {}
    for cell in table.cells:
        by_row.setdefault(cell.row, []).append(cell)
    for r in range(table.num_rows):
        parts.append("<tr>")
        for cell in sorted(by_row.get(r, []), key=lambda c: c.col):
            attrs = (f' rowspan="{cell.row_span}"' if cell.row_span > 1 else "") + \
                    (f' colspan="{cell.col_span}"' if cell.col_span > 1 else "")
            parts.append(f"<td{attrs}>{html.escape(cell.text, quote=False)}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    return "".join(parts)


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def to_markdown(table: Table) -> str:
    """Pipe table (first row as header); "" when a cell spans, which Markdown cannot show."""
    if table.has_spans or not table.cells:
        return ""
    grid = [["" for _ in range(table.num_cols)] for _ in range(table.num_rows)]
    for cell in table.cells:
        grid[cell.row][cell.col] = _md_cell(cell.text)
    lines = ["| " + " | ".join(row) + " |" for row in grid]
    lines.insert(1, "|" + "|".join(" --- " for _ in range(table.num_cols)) + "|")
    return "\n".join(lines)


def convert(answer: str) -> tuple[str, str]:
    """(html, markdown) for a table answer; an answer that is already HTML passes through."""
    text = answer.strip()
    if text.startswith("<table") and text.endswith("</table>"):
        return text, ""
    table = parse_otsl(text)
    if not table.cells:
        return "", ""
    return to_html(table), to_markdown(table)
