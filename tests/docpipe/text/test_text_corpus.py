"""The pipeline text layer on the dev corpus: mean normalized edit distance
over the files with a text layer, scored like bench/quality_eval.py (its
`plain` normalisation is imported so the two cannot drift apart)."""
import csv
import importlib.util
from pathlib import Path

import pymupdf
import pytest
from rapidfuzz.distance import Levenshtein

from docpipe.config import ConvertOptions
from docpipe.text.backend import extract_pages
from docpipe.writers.markdown import render_markdown

CORPUS = Path("/work/shared/corpus")
EVAL = Path("/work/shared/bench/quality_eval.py")
TARGET_NED = 0.09

pytestmark = pytest.mark.skipif(not (CORPUS / "dev").is_dir() or not EVAL.exists(),
                                reason="dev corpus not present (CI clones do not carry it)")


def _plain():
    spec = importlib.util.spec_from_file_location("quality_eval", EVAL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.plain


def test_text_layer_files_mean_ned():
    plain = _plain()
    layer = {r["filename"]: r["text_layer"] for r in csv.DictReader(open(CORPUS / "SOURCES.tsv"), delimiter="\t")}
    scores = {}
    for pdf in sorted((CORPUS / "dev").glob("*.pdf")):
        if layer.get(pdf.name, "yes").startswith("no"):
            continue
        with pymupdf.open(pdf) as doc:
            pages = list(extract_pages(doc, list(range(doc.page_count)), ConvertOptions(ocr="never")))
        assert all(p.ok for p in pages), [p.error for p in pages if not p.ok]
        ref = pdf.with_suffix(".md").read_text()
        scores[pdf.name] = Levenshtein.normalized_distance(plain(render_markdown(pages)), plain(ref))
    assert len(scores) == 11
    mean = sum(scores.values()) / len(scores)
    assert mean <= TARGET_NED, scores
