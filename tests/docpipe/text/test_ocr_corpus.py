"""Quality gate on the dev corpus's four pages without a text layer: mean
normalized edit distance of the OCR backend's Markdown <= 0.10, scored with
the corpus's own metric (bench/quality_eval.py next to it). The corpus lives
outside the repository: skipped where it is absent. OCR of four pages takes
about a minute on two cores, hence the `slow` marker."""
import importlib.util
import os
from pathlib import Path

import pymupdf
import pytest

from docpipe.schema import PageResult
from docpipe.text.ocr import OcrEngine, needs_ocr
from docpipe.text.ocr_lines import page_blocks
from docpipe.writers.markdown import render_markdown

CORPUS = Path(os.environ.get("DOCPIPE_CORPUS_DEV", "/work/shared/corpus/dev"))
METRIC = CORPUS.parent.parent / "bench" / "quality_eval.py"
SCANNED = ["ocr_test", "omnidocbench_zh_book_double_column",
           "omnidocbench_zh_research_report_table", "omnidocbench_en_academic_double_column"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CORPUS / "ocr_test.pdf").exists() or not METRIC.exists(),
                       reason=f"dev corpus or its metric not found at {CORPUS} (set DOCPIPE_CORPUS_DEV)"),
]


def _metric():
    spec = importlib.util.spec_from_file_location("quality_eval", METRIC)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scanned_pages_mean_ned():
    metric, engine, scores = _metric(), OcrEngine(), {}
    for stem in SCANNED:
        with pymupdf.open(CORPUS / f"{stem}.pdf") as doc:
            pages = []
            for page in doc:
                assert needs_ocr(page), f"{stem}.pdf page {page.number + 1}"
                blocks = page_blocks(engine.read_page(page, dpi=200), page.rect.width, page.rect.height)
                pages.append(PageResult(page_idx=page.number, width_pt=page.rect.width,
                                        height_pt=page.rect.height, blocks=blocks, source="ocr"))
        scores[stem] = metric.ned(render_markdown(pages), (CORPUS / f"{stem}.md").read_text())
    mean = sum(scores.values()) / len(scores)
    assert mean <= 0.10, scores
