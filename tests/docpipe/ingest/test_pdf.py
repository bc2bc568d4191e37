"""open_pdf: every kind of bad PDF gives a PdfError naming the file (and page)."""
from __future__ import annotations

import pickle

import pymupdf
import pytest
from pdf_factory import set_media_box, write_pages, zero_page_pdf

from docpipe.ingest.errors import PdfError
from docpipe.ingest.pdf import open_pdf


def _error(path, **kwargs) -> PdfError:
    with pytest.raises(PdfError) as info:
        open_pdf(path, **kwargs)
    assert info.value.path == str(path) and str(path) in str(info.value)
    return info.value


def test_good_pdf_opens_with_all_pages(good_pdf):
    doc = open_pdf(good_pdf)
    assert doc.page_count == 3 and "page 3" in doc[2].get_text()
    doc.close()


def test_text_file_renamed_to_pdf(tmp_path):
    path = tmp_path / "notes.pdf"
    path.write_text("just some notes\n")
    err = _error(path)
    assert err.reason == "not a PDF (no %PDF header)" and err.page is None


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.pdf").write_bytes(b"")
    assert _error(tmp_path / "empty.pdf").reason == "empty file (0 bytes)"
    assert _error(tmp_path / "missing.pdf").reason == "file not found"
    assert _error(tmp_path).reason == "not a file"


@pytest.mark.parametrize("keep_fraction", [0.5, 0.9])
def test_truncated_pdf(tmp_path, keep_fraction):
    data = open(write_pages(tmp_path / "full.pdf", [(612, 792)] * 5), "rb").read()
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    err = _error(path)
    assert err.reason.startswith("truncated or corrupt") and "startxref" in err.reason


def test_header_then_garbage(tmp_path):
    path = tmp_path / "garbage.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    assert _error(path).reason.startswith("corrupt: cannot be opened")


def test_repaired_but_complete_pdf_is_accepted(tmp_path):
    """A wrong startxref offset (common in the wild) is repaired silently and harmless."""
    data = open(write_pages(tmp_path / "ok.pdf", [(612, 792)] * 2), "rb").read()
    head, _, tail = data.rpartition(b"startxref\n")
    path = tmp_path / "offset.pdf"
    path.write_bytes(head + b"startxref\n" + b"12" + tail[tail.index(b"\n"):])
    doc = open_pdf(path)
    assert doc.is_repaired and doc.page_count == 2
    doc.close()


def test_encrypted_pdf_needs_the_right_password(tmp_path, good_pdf):
    path = str(tmp_path / "locked.pdf")
    pymupdf.open(good_pdf).save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    assert _error(path).reason == "encrypted: password required (use --password)"
    assert _error(path, password="guess").reason == "encrypted: wrong password"
    doc = open_pdf(path, password="user")
    assert doc.page_count == 3 and "page 1" in doc[0].get_text()
    doc.close()


def test_zero_pages(tmp_path):
    assert _error(zero_page_pdf(tmp_path / "zero.pdf")).reason == "no pages"


def test_giant_page_is_named(tmp_path):
    path = write_pages(tmp_path / "giant.pdf", [(612, 792)] * 3)
    set_media_box(path, 1, "[0 0 100000 300]")
    err = _error(path)
    assert err.page == 2 and "absurd page size 100000 x 300 pt" in err.reason
    assert str(err) == f"{path}: page 2: {err.reason}"
    open_pdf(path, max_page_side_pt=200000).close()  # the limit is the caller's choice


def test_tiny_page_is_named(tmp_path):
    path = write_pages(tmp_path / "tiny.pdf", [(612, 792)] * 3)
    set_media_box(path, 2, "[0 0 10 0.5]")
    err = _error(path)
    assert err.page == 3 and "under 1 pt" in err.reason


def test_pdf_error_survives_pickling():
    err = pickle.loads(pickle.dumps(PdfError("a.pdf", 4, "broken")))
    assert (err.path, err.page, err.reason, str(err)) == ("a.pdf", 4, "broken", "a.pdf: page 4: broken")
