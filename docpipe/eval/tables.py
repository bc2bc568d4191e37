"""Tables found in a Markdown document, as trees for TEDS.

Both HTML `<table>` elements and Markdown pipe tables are read (a converter
may emit either for the same table). Trees are normalised so that equivalent
markup compares equal: `thead`/`tbody`/`tfoot` wrappers are dropped and `th`
counts as `td`. Shape: table -> tr -> td(text, colspan, rowspan).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Node:
    tag: str  # table | tr | td
    text: str = ""  # cell text, whitespace collapsed (td only)
    colspan: int = 1
    rowspan: int = 1
    children: list["Node"] = field(default_factory=list)

    def size(self) -> int:
        return 1 + sum(c.size() for c in self.children)


def _span(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


class _TableParser(HTMLParser):
    """Collects every top-level <table> as a Node tree (nested tables' text
    goes into the enclosing cell)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[Node] = []
        self._depth = 0  # table nesting depth
        self._row: Node | None = None
        self._cell: Node | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._depth += 1
            if self._depth == 1:
                self.tables.append(Node("table"))
        elif self._depth == 1 and tag == "tr":
            self._row = Node("tr")
            self.tables[-1].children.append(self._row)
        elif self._depth == 1 and tag in ("td", "th"):
            a = dict(attrs)
            if self._row is None:  # cell outside any <tr>: give it an implicit row
                self._row = Node("tr")
                self.tables[-1].children.append(self._row)
            self._cell = Node("td", colspan=_span(a.get("colspan")), rowspan=_span(a.get("rowspan")))
            self._row.children.append(self._cell)
            self._text = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._depth == 1:
            self._close_cell()
        elif tag == "tr" and self._depth == 1:
            self._close_cell()
            self._row = None
        elif tag == "table" and self._depth:
            if self._depth == 1:
                self._close_cell()
                self._row = None
            self._depth -= 1

    def handle_data(self, data):
        if self._cell is not None:
            self._text.append(data)

    def _close_cell(self):
        if self._cell is not None:
            self._cell.text = " ".join("".join(self._text).split())
            self._cell = None


def html_tables(text: str) -> list[Node]:
    parser = _TableParser()
    parser.feed(text)
    parser.close()
    return parser.tables


_SEP = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")


def _cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    parts = re.split(r"(?<!\\)\|", s)
    return [" ".join(html.unescape(p.replace("\\|", "|")).split()) for p in parts]


def pipe_tables(text: str) -> list[Node]:
    """GitHub-style pipe tables: a header row, a separator row, body rows."""
    lines = text.splitlines()
    tables, i = [], 0
    while i + 1 < len(lines):
        if "|" in lines[i] and _SEP.match(lines[i + 1]) and "-" in lines[i + 1]:
            rows = [lines[i]]
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(lines[i])
                i += 1
            table = Node("table")
            for row in rows:
                table.children.append(Node("tr", children=[Node("td", text=c) for c in _cells(row)]))
            tables.append(table)
        else:
            i += 1
    return tables


def find_tables(markdown: str) -> list[Node]:
    """HTML tables, then pipe tables, of one document."""
    without_html = re.sub(r"<table\b.*?</table>", " ", markdown, flags=re.S | re.I)
    return html_tables(markdown) + pipe_tables(without_html)
