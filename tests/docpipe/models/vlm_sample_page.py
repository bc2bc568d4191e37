"""The sample page of the replay golden test, drawn with PyMuPDF.

A US-Letter page (612 x 792 pt) with: a running header, a numbered title and
a numbered subtitle, a paragraph with inline math, a display equation, a
table with a caption and two merged cells (a row span and a column span), a
grey picture with a caption, a note rotated 90 degrees in the right margin,
and a page number. `BOXES_PT` are the regions drawn; the hand-written layout
answer in tests/fixtures/replay/sample_page/script.json points at them.
"""
from __future__ import annotations

import pymupdf as fitz
from PIL import Image

WIDTH_PT, HEIGHT_PT = 612.0, 792.0
DPI = 200
FONT = "helv"  # a base-14 font: no font file needed, renders the same everywhere

BOXES_PT = {
    "header": (72, 30, 260, 44),
    "title": (72, 80, 260, 104),
    "text": (72, 116, 540, 150),
    "equation": (256, 158, 356, 180),
    "subtitle": (72, 194, 220, 212),
    "table_caption": (72, 220, 372, 234),
    "table": (72, 238, 372, 328),
    "image": (72, 350, 272, 470),
    "image_caption": (72, 476, 272, 490),
    "rotated": (546, 400, 566, 520),
    "page_number": (296, 752, 316, 766),
}


def _table(page: fitz.Page) -> None:
    x = [72, 172, 272, 372]
    y = [238, 268, 298, 328]
    shape = page.new_shape()
    shape.draw_rect(fitz.Rect(x[0], y[0], x[3], y[3]))
    shape.draw_line((x[1], y[0]), (x[1], y[3]))  # Model | rest, full height
    shape.draw_line((x[1], y[1]), (x[3], y[1]))  # under "Score" only: Model spans two rows
    shape.draw_line((x[0], y[2]), (x[3], y[2]))
    shape.draw_line((x[2], y[1]), (x[2], y[3]))  # EN | DE: Score spans two columns
    shape.finish(color=(0, 0, 0), width=0.8)
    shape.commit()
    cells = [("Model", 0, 0, 1), ("Score", 1, 0, 3), ("EN", 1, 1, 2), ("DE", 2, 1, 3),
             ("docpipe", 0, 2, 1), ("91.2", 1, 2, 2), ("88.0", 2, 2, 3)]
    for text, c0, r0, c1 in cells:
        r1 = r0 + (2 if text == "Model" else 1)
        page.insert_textbox(fitz.Rect(x[c0] + 6, y[r0] + 8, x[c1] - 6, y[r1]), text,
                            fontname=FONT, fontsize=11, align=fitz.TEXT_ALIGN_CENTER)


def build_pdf() -> bytes:
    doc = fitz.open()
    page = doc.new_page(width=WIDTH_PT, height=HEIGHT_PT)
    b = BOXES_PT
    page.insert_text((72, 41), "docpipe sample report", fontname=FONT, fontsize=9)
    page.insert_text((72, 100), "1 Introduction", fontname=FONT, fontsize=18)
    page.insert_textbox(fitz.Rect(*b["text"]), "Energy and mass are related by the equation below, "
                        "where m is the mass and c the speed of light.", fontname=FONT, fontsize=11)
    page.insert_text((266, 175), "E = mc", fontname=FONT, fontsize=14)
    page.insert_text((309, 168), "2", fontname=FONT, fontsize=9)
    page.insert_text((72, 208), "1.1 Results", fontname=FONT, fontsize=13)
    page.insert_text((72, 231), "Table 1: Scores by language.", fontname=FONT, fontsize=10)
    _table(page)
    page.draw_rect(fitz.Rect(*b["image"]), color=(0.3, 0.3, 0.3), fill=(0.6, 0.6, 0.6))
    page.insert_text((72, 487), "Figure 1: A grey box.", fontname=FONT, fontsize=10)
    page.insert_text((560, 515), "Draft - not for distribution", fontname=FONT, fontsize=10, rotate=90)
    page.insert_text((302, 763), "1", fontname=FONT, fontsize=9)
    data = doc.tobytes()
    doc.close()
    return data


def render(pdf: bytes, dpi: int = DPI) -> Image.Image:
    """Page 1 at `dpi`, RGB, the way the pipeline renders for the VLM."""
    with fitz.open(stream=pdf, filetype="pdf") as doc:
        pix = doc[0].get_pixmap(dpi=dpi, alpha=False)
        return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
