"""`docpipe eval`'s NED must agree with the project's reference script."""
import importlib.util
import itertools
from pathlib import Path

import pytest

from docpipe.eval.text import ned, plain

REFERENCE = Path(__file__).resolve().parents[3].parent / "shared" / "bench" / "quality_eval.py"

SNIPPETS = [
    "# Title\n\nSome *emphasis* and **bold** text.",
    "- item one\n- item two\n1. first\n2) second",
    "| a | b |\n|---|:---:|\n| 1 | 2 |",
    "<table><tr><td>x &amp; y</td></tr></table>",
    "![alt text](images/abc.png) and a [link](http://example.com)",
    "<!-- a comment\nover lines -->tail `code` __under__",
    "   ### indented heading\n\n---\n\nrule above",
    "Unicode: café, 数据, ﬁ ligature &lt;tag&gt;",
    "",
]


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.exists():
        pytest.skip(f"reference script not found at {REFERENCE} (shared/ not beside the repo)")
    spec = importlib.util.spec_from_file_location("quality_eval_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("text", SNIPPETS)
def test_plain_text_identical(reference, text):
    assert plain(text) == reference.plain(text)


def test_ned_identical_on_pairs(reference):
    for a, b in itertools.product(SNIPPETS, repeat=2):
        assert ned(a, b) == reference.ned(a, b), (a, b)


def test_ned_identical_on_a_real_document(reference):
    sample = Path(__file__).resolve().parents[3] / "samples" / "two_column_report.md"
    ref = sample.read_text()
    pred = ref.replace("clinics", "clinic").replace("## ", "")[:-200]
    assert ned(pred, ref) == reference.ned(pred, ref) and 0 < ned(pred, ref) < 0.1


def test_ned_bounds():
    assert ned("same text", "same   text") == 0.0
    assert ned("", "") == 0.0
    assert ned("", "something") == 1.0
