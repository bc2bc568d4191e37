"""needs_ocr: image-only pages, born-digital pages, garbage text layers."""
import pymupdf

from docpipe.text.ocr import needs_ocr

TEXT = ("Quarterly results were strong across all regions this year, and the outlook "
        "for the coming year remains positive in every market that we serve.")


def _text_page(doc: pymupdf.Document, render_mode: int = 0, text: str = TEXT) -> pymupdf.Page:
    page = doc.new_page(width=300, height=200)
    page.insert_textbox(pymupdf.Rect(20, 20, 280, 180), text, fontsize=10, render_mode=render_mode)
    return page


def _scan_page(doc: pymupdf.Document) -> pymupdf.Page:
    """The text page rendered to pixels, the image alone on a new page."""
    src = pymupdf.open()
    pix = _text_page(src).get_pixmap(dpi=100)
    page = doc.new_page(width=300, height=200)
    page.insert_image(page.rect, pixmap=pix)
    return page


def test_image_only_page_needs_ocr():
    assert needs_ocr(_scan_page(pymupdf.open()))


def test_born_digital_page_does_not():
    assert not needs_ocr(_text_page(pymupdf.open()))


def test_blank_page_does_not():
    assert not needs_ocr(pymupdf.open().new_page())


def test_scan_with_a_stamp_needs_ocr():
    doc = pymupdf.open()
    page = _scan_page(doc)
    page.insert_text((250, 195), "p. 12", fontsize=6)  # a few visible characters over a scan
    assert needs_ocr(page)


def test_unmapped_glyphs_need_ocr():
    """A font whose ToUnicode maps every code to the private-use area."""
    doc = pymupdf.open()
    _text_page(doc)
    font = next(x for x in range(1, doc.xref_length()) if "/BaseFont" in doc.xref_object(x))
    cmap = (b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap "
            b"/CMapName /Garble def 1 begincodespacerange <00> <FF> endcodespacerange "
            b"1 beginbfrange <20> <7E> <E020> endbfrange endcmap "
            b"CMapName currentdict /CMap defineresource pop end end")
    xref = doc.get_new_xref()
    doc.update_object(xref, "<<>>")
    doc.update_stream(xref, cmap)
    doc.xref_set_key(font, "ToUnicode", f"{xref} 0 R")
    reopened = pymupdf.open("pdf", doc.tobytes())
    assert "\ue051" in reopened[0].get_text()  # the layer really is garbage
    assert needs_ocr(reopened[0])


def test_invisible_ocr_layer_judged_by_its_text():
    doc = pymupdf.open()
    good = _scan_page(doc)
    good.insert_textbox(pymupdf.Rect(20, 20, 280, 180), TEXT, fontsize=10, render_mode=3)
    assert not needs_ocr(good)  # a plausible OCR layer is kept
    bad = _scan_page(doc)
    noise = "~|{ }^ #@ \\/ ;: %$ <> ][ ~~|| ^^ ## @@ }{ ?! ~^ |# @$ %^ &* () _+ =- " * 3
    bad.insert_textbox(pymupdf.Rect(20, 20, 280, 180), noise, fontsize=10, render_mode=3)
    assert needs_ocr(bad)


def test_consonant_soup_is_garbage():
    doc = pymupdf.open()
    soup = " ".join(["qzxv", "brtkl", "mnpqr", "xkcd", "tvsch", "prst", "kjhgf", "wxz"] * 6)
    page = _scan_page(doc)
    page.insert_textbox(pymupdf.Rect(20, 20, 280, 180), soup, fontsize=8, render_mode=3)
    assert needs_ocr(page)
