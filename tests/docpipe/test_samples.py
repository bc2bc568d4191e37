"""samples/: the quick-start PDFs match their expected Markdown, stay small,
and `docpipe convert samples` reproduces that Markdown closely."""
import importlib.util
from pathlib import Path

import pymupdf
import pytest
from batch_pdfs import in_process  # noqa: F401 (fixture)
from typer.testing import CliRunner

from docpipe.cli import app
from docpipe.eval.report import evaluate_dirs

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
MAX_NED = 0.05  # plain-text edit distance allowed per sample (measured 0.005-0.007)
MIN_TEDS = 0.9  # each sample's table must come back as a table (measured 0.99-1.0)


def _make_samples():
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = _make_samples()


@pytest.mark.parametrize("name", sorted(MAKE.SAMPLES))
def test_committed_pdf_is_built_from_its_markdown(tmp_path, name):
    committed = SAMPLES / f"{name}.pdf"
    assert committed.stat().st_size < 100_000
    rebuilt = MAKE.build(name, MAKE.SAMPLES[name], out_dir=tmp_path)
    with pymupdf.open(committed) as a, pymupdf.open(rebuilt) as b:
        assert a.page_count >= 2 and b.page_count >= 2
        # words, not lines: another MuPDF version may break lines differently
        assert " ".join(p.get_text() for p in a).split() == " ".join(p.get_text() for p in b).split()


def test_samples_cover_the_features():
    md = "\n".join((SAMPLES / f"{n}.md").read_text() for n in MAKE.SAMPLES)
    assert "\n## " in md and "\n### " in md and "\n| --- |" in md and "\n- " in md and "\n1. " in md
    assert "![](figure.png)" in md
    assert 2 in MAKE.SAMPLES.values()  # one sample is laid out in two columns
    with pymupdf.open(SAMPLES / "two_column_report.pdf") as doc:
        assert sum(len(p.get_images()) for p in doc) == 1


def test_demo_command_reproduces_expected_markdown(tmp_path, in_process):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["convert", str(SAMPLES), "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = evaluate_dirs(out, SAMPLES)
    assert sorted(f.name for f in report.files) == sorted(f"{n}.md" for n in MAKE.SAMPLES)
    for f in report.files:
        assert f.has_prediction and f.ned < MAX_NED, (f.name, f.ned)
        assert f.teds is not None and f.teds > MIN_TEDS, (f.name, f.teds)
    images = list((out / "two_column_report" / "images").glob("*.png"))
    assert len(images) == 1 and images[0].read_bytes().startswith(b"\x89PNG")
