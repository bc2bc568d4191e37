"""Golden-file test of the VLM page flow with a replay model.

The sample page (sample_page.py) is drawn with PyMuPDF and rendered at 200
dpi; a ReplayClient answers from tests/fixtures/replay/sample_page/answers/
(hand-written MinerU2.5 answers from script.json, keyed by request content).
The Markdown (docpipe.writers.markdown) and content_list
(docpipe.writers.content_list) must equal the golden files exactly.

DOCPIPE_REGEN_GOLDEN=1 rewrites the keyed answers from script.json and the
golden files from the current code; review the diff before committing.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from docpipe.models.replay import ReplayClient, write_record
from docpipe.models.vlm_page import (answers_for, blocks_from_layout, convert_page, finish_page,
                                     make_block_requests, make_layout_request)
from docpipe.writers.content_list import build_content_list
from docpipe.writers.markdown import render_markdown
import vlm_sample_page as sample_page

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "replay" / "sample_page"
ANSWERS = FIXTURE / "answers"
REGEN = os.environ.get("DOCPIPE_REGEN_GOLDEN") == "1"


@pytest.fixture(scope="module")
def render():
    return sample_page.render(sample_page.build_pdf())


def _record_script(render) -> None:
    """Key the hand-written answers of script.json by the requests this code makes."""
    script = json.loads((FIXTURE / "script.json").read_text())
    for old in ANSWERS.glob("*.json"):
        old.unlink()
    layout_req = make_layout_request(render)
    write_record(ANSWERS, layout_req, script["layout"])
    blocks = blocks_from_layout(script["layout"])
    breqs = make_block_requests(blocks, render)
    assert [blocks[b.block_idx].type for b in breqs] == [s["type"] for s in script["blocks"]]
    for breq, spec in zip(breqs, script["blocks"]):
        write_record(ANSWERS, breq.request, spec["answer"])


def _with_img_paths(page):
    """What the file writer does before writing: name crops by content hash."""
    for block in page.blocks:
        if block.image:
            block.img_path = f"images/{hashlib.sha256(block.image).hexdigest()}.png"
    return page


def _check(name: str, actual: str) -> None:
    path = FIXTURE / name
    if REGEN:
        path.write_text(actual, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == actual, f"{name} differs (DOCPIPE_REGEN_GOLDEN=1 to update)"


@pytest.fixture(scope="module")
def page(render):
    if REGEN:
        _record_script(render)
    result = convert_page(ReplayClient(ANSWERS), render, 0, sample_page.WIDTH_PT, sample_page.HEIGHT_PT)
    assert result.ok, result.error
    return _with_img_paths(result)


def test_markdown_matches_golden(page):
    _check("expected.md", render_markdown([page]))


def test_content_list_matches_golden(page):
    entries = build_content_list([page])
    # one entry per line: a golden diff then names the entry that changed
    lines = ",\n".join(" " + json.dumps(e, ensure_ascii=False) for e in entries)
    _check("expected_content_list.json", f"[\n{lines}\n]\n")
    assert json.loads((FIXTURE / "expected_content_list.json").read_text()) == entries


def test_page_structure(page):
    by_type = {}
    for b in page.blocks:
        by_type.setdefault(b.type, []).append(b)
    assert [(b.text, b.level) for b in by_type["title"]] == [("1 Introduction", 1), ("1.1 Results", 2)]
    table = by_type["table"][0]
    assert 'rowspan="2"' in table.html and 'colspan="2"' in table.html
    assert table.markdown_table == ""  # spans: HTML only
    assert table.captions == ["Table 1: Scores by language."]
    assert table.image and table.image.startswith(b"\x89PNG")
    assert by_type["image"][0].captions == ["Figure 1: A grey box."]
    assert by_type["equation"][0].text == "E = m c^{2}"
    assert "$m$" in by_type["text"][0].text
    rotated = [b for b in by_type["text"] if b.rotation == 270]
    assert [b.text for b in rotated] == ["Draft - not for distribution"]
    assert {"header", "page_number"} <= set(by_type)
    # the text box inside the table was dropped; captions left the flow
    assert len(by_type["text"]) == 2 and "table_caption" not in by_type
    md = render_markdown([page])
    assert "docpipe sample report" not in md  # furniture stays out of the body


def test_replay_miss_names_the_missing_key(render, tmp_path):
    req = make_layout_request(render)
    with pytest.raises(LookupError) as err:
        ReplayClient(tmp_path).generate([req])
    assert req.key in str(err.value) and str(tmp_path) in str(err.value)
    page = convert_page(ReplayClient(tmp_path), render, 4, 612, 792)
    assert not page.ok and page.error.startswith("page 5:") and req.key in page.error


def test_hybrid_text_layer_stands_in_for_text_blocks(render):
    calls = []

    def from_text_layer(bbox):
        calls.append(bbox)
        return "TEXT LAYER"

    blocks = blocks_from_layout(json.loads((FIXTURE / "script.json").read_text())["layout"])
    breqs = make_block_requests(blocks, render, text_for_bbox=from_text_layer)
    assert len(calls) == 2  # the two plain text blocks, nothing else
    assert all(blocks[b.block_idx].type != "text" for b in breqs)
    outputs = ReplayClient(ANSWERS).generate([b.request for b in breqs])
    page = finish_page(blocks, answers_for(breqs, outputs), 0, 612, 792)
    assert page.source == "hybrid"
    texts = [b for b in page.blocks if b.type == "text"]
    assert [(b.text, b.source) for b in texts] == [("TEXT LAYER", "text_layer")] * 2
    assert all(b.source == "vlm" for b in page.blocks if b.type != "text")


def test_vlm_page_source_and_timings(page):
    assert page.source == "vlm" and set(page.timings_s) == {"vlm_layout", "vlm_blocks"}
