"""Good and bad PDFs, generated in tmp_path with PyMuPDF (or by hand where
PyMuPDF refuses to write them)."""
from __future__ import annotations

import zlib

import pymupdf


def write_pages(path, sizes_pt, text="page {i}"):
    doc = pymupdf.open()
    for i, (width_pt, height_pt) in enumerate(sizes_pt):
        page = doc.new_page(width=width_pt, height=height_pt)
        page.insert_text((36, 36), text.format(i=i + 1))
    doc.save(path)
    doc.close()
    return str(path)


def set_media_box(path, page_idx, box):
    """Rewrites one page's MediaBox (new_page refuses absurd sizes)."""
    doc = pymupdf.open(path)
    doc.xref_set_key(doc[page_idx].xref, "MediaBox", box)
    doc.saveIncr()
    doc.close()


def zero_page_pdf(path):
    """A well-formed PDF whose page tree is empty (PyMuPDF cannot save one)."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[]/Count 0>>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    path.write_bytes(bytes(out))
    return str(path)


def image_page_pdf(path, num_pages, bomb_page_idx, bomb_px):
    """Pages with text; one page draws a gray image declared bomb_px x bomb_px,
    stored as Flate-compressed zeros (tiny on disk, bomb_px**2 bytes decoded).
    Past 2000 px only the first 2000 rows are stored (MuPDF pads the rest),
    which keeps generation fast; the size guards read the declared size."""
    write_pages(path, [(300, 300)] * num_pages)
    doc = pymupdf.open(path)
    compressor = zlib.compressobj(9)
    row = bytes(bomb_px)
    data = b"".join(compressor.compress(row) for _ in range(min(bomb_px, 2000))) + compressor.flush()
    # Draw a small placeholder image, then swap its stream for the bomb.
    placeholder = pymupdf.Pixmap(pymupdf.csGRAY, pymupdf.IRect(0, 0, 2, 2), False)
    xref = doc[bomb_page_idx].insert_image(pymupdf.Rect(50, 50, 250, 250), pixmap=placeholder)
    doc.update_object(xref, f"<</Type/XObject/Subtype/Image/Width {bomb_px}/Height {bomb_px}"
                            f"/ColorSpace/DeviceGray/BitsPerComponent 8/Filter/FlateDecode>>")
    doc.update_stream(xref, data, compress=False)
    doc.saveIncr()
    doc.close()
    return str(path)


