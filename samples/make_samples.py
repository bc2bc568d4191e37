"""Build the sample PDFs from their expected Markdown, with PyMuPDF's Story API.

Each sample's Markdown (samples/<name>.md) is the source of truth: this script
turns it into HTML (a small converter for the subset the samples use:
headings, paragraphs, bullet and numbered lists, pipe tables, images) and
lays the HTML out on A5 pages, in one or two columns. A converter that reads
the PDF back should reproduce the Markdown. Fonts are subset on save, so each PDF
stays small; the figure is drawn here as well.

Run: python samples/make_samples.py   (rewrites samples/*.pdf)
"""
from __future__ import annotations

import html
import math
import re
from pathlib import Path

import pymupdf

HERE = Path(__file__).resolve().parent
PAGE = pymupdf.paper_rect("a5")
MARGIN_PT = 40.0
GUTTER_PT = 16.0
CSS = """
* { font-family: sans-serif; font-size: 9pt; line-height: 1.25; }
h1 { font-size: 17pt; margin: 0 0 8pt 0; }
h2 { font-size: 12.5pt; margin: 8pt 0 4pt 0; }
h3 { font-size: 10.5pt; margin: 6pt 0 3pt 0; }
p, ul, ol { margin: 0 0 5pt 0; }
table { border-collapse: collapse; margin: 4pt 0 6pt 0; }
th, td { border: 0.5pt solid #444; padding: 2pt 4pt; text-align: left; }
th { font-weight: bold; }
"""
# name -> number of text columns
SAMPLES = {"two_column_report": 2, "field_guide": 1}


def figure_png() -> bytes:
    """A small bar chart, drawn with PyMuPDF and rendered to PNG."""
    doc = pymupdf.open()
    page = doc.new_page(width=160, height=90)
    page.draw_rect(page.rect, color=None, fill=(0.96, 0.96, 0.93))
    for i, h in enumerate((30, 55, 42, 70, 62)):
        x = 14 + i * 28
        page.draw_rect(pymupdf.Rect(x, 82 - h, x + 18, 82), color=None, fill=(0.2, 0.45, 0.7))
    page.draw_line((8, 82), (152, 82), color=(0, 0, 0), width=0.8)
    png = page.get_pixmap(dpi=96).tobytes("png")
    doc.close()
    return png


def _inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text, quote=False))


def _table_html(rows: list[str]) -> str:
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in cells[2:])
    return f"<table><tr>{head}</tr>{body}</table>"


def markdown_to_html(md: str) -> str:
    """HTML for the Markdown subset the samples use (one block per blank-line
    separated chunk)."""
    out = []
    for chunk in re.split(r"\n\s*\n", md.strip()):
        lines = chunk.splitlines()
        first = lines[0]
        if m := re.match(r"^(#{1,6})\s+(.*)$", first):
            out.append(f"<h{len(m[1])}>{_inline(m[2])}</h{len(m[1])}>")
        elif first.startswith("|"):
            out.append(_table_html(lines))
        elif m := re.match(r"^!\[([^\]]*)\]\(([^)]+)\)$", first):
            out.append(f'<p><img src="{m[2]}" width="160"/></p>')
        elif re.match(r"^- ", first):
            out.append("<ul>" + "".join(f"<li>{_inline(ln[2:])}</li>" for ln in lines) + "</ul>")
        elif re.match(r"^\d+\. ", first):
            items = [re.sub(r"^\d+\.\s+", "", ln) for ln in lines]
            out.append("<ol>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ol>")
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(out)


def _columns(top_pt: float, num_columns: int) -> list[pymupdf.Rect]:
    width = (PAGE.width - 2 * MARGIN_PT - (num_columns - 1) * GUTTER_PT) / num_columns
    bottom = PAGE.height - MARGIN_PT
    return [pymupdf.Rect(MARGIN_PT + i * (width + GUTTER_PT), top_pt, MARGIN_PT + i * (width + GUTTER_PT) + width,
                         bottom) for i in range(num_columns)]


def build(name: str, num_columns: int, out_dir: Path = HERE) -> Path:
    """samples/<name>.md -> out_dir/<name>.pdf"""
    md = (HERE / f"{name}.md").read_text(encoding="utf-8")
    # The title (first block) spans the page; the rest flows through the columns.
    title_md, body_md = md.strip().split("\n\n", 1)
    archive = pymupdf.Archive()
    archive.add((figure_png(), "figure.png"))
    title = pymupdf.Story(markdown_to_html(title_md), user_css=CSS)
    body = pymupdf.Story(markdown_to_html(body_md), user_css=CSS, archive=archive)
    path = Path(out_dir) / f"{name}.pdf"
    writer = pymupdf.DocumentWriter(str(path))
    top = MARGIN_PT
    dev = writer.begin_page(PAGE)
    _, filled = title.place(pymupdf.Rect(MARGIN_PT, top, PAGE.width - MARGIN_PT, PAGE.height - MARGIN_PT))
    title.draw(dev)
    # Whole points: MuPDF 1.28's Story.place drops content (more=0 with an
    # overflowing fill) when the column starts at some fractional offsets.
    top = math.ceil(pymupdf.Rect(filled).y1) + 6.0
    more = 1
    while more:
        for rect in _columns(top, num_columns):
            more, filled = body.place(rect)
            if pymupdf.Rect(filled).y1 > rect.y1 + 12:  # would lose text silently
                raise RuntimeError(f"{name}: content overflows {rect} by {pymupdf.Rect(filled).y1 - rect.y1:.0f} pt")
            body.draw(dev)
            if not more:
                break
        writer.end_page()
        if more:
            dev, top = writer.begin_page(PAGE), MARGIN_PT
    writer.close()
    _finish(path)
    return path


def _finish(path: Path) -> None:
    """Metadata, then a compact save (fixed dates keep rebuilds identical)."""
    doc = pymupdf.open(path)
    doc.set_metadata({"title": path.stem.replace("_", " "), "creator": "docpipe samples/make_samples.py",
                      "creationDate": "D:20250101000000", "modDate": "D:20250101000000"})
    doc.subset_fonts()
    doc.save(str(path) + ".tmp", garbage=4, deflate=True, no_new_id=True)
    doc.close()
    Path(str(path) + ".tmp").replace(path)


def main() -> None:
    for name, num_columns in SAMPLES.items():
        path = build(name, num_columns)
        with pymupdf.open(path) as doc:
            print(f"{path.name}: {doc.page_count} pages, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
