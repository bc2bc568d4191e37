"""Small PDFs made on the fly for the pipeline, API and CLI tests."""
from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from docpipe import runner


@pytest.fixture
def in_process(monkeypatch):
    """Run a batch's documents in this process (fast: no worker spawn). The
    worker pool itself is tested in test_runner.py and by one CLI test."""
    real = runner.run_documents

    def run(sources, fn, opts, on_pages=None):
        return real(sources, fn, opts, on_pages=on_pages, in_process=True)

    monkeypatch.setattr(runner, "run_documents", run)


def make_pdf(path: Path, pages: list[str]) -> Path:
    """One text paragraph per page, Helvetica 11 pt."""
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page(width=595, height=842)
        page.insert_textbox(pymupdf.Rect(72, 72, 523, 770), text, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path)
    doc.close()
    return path


def make_bad_folder(folder: Path) -> dict[str, Path]:
    """A good PDF, a truncated PDF, a text file named .pdf and an encrypted PDF."""
    folder.mkdir(parents=True, exist_ok=True)
    good = make_pdf(folder / "good.pdf", ["The good document converts.", "Its second page too."])
    data = good.read_bytes()
    truncated = folder / "truncated.pdf"
    truncated.write_bytes(data[: len(data) // 2])
    text = folder / "notes.pdf"
    text.write_text("just some notes, not a PDF\n")
    locked = folder / "locked.pdf"
    with pymupdf.open(good) as doc:
        doc.save(locked, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner")
    return {"good": good, "truncated": truncated, "notes": text, "locked": locked}
