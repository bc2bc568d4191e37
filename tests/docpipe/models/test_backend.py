"""The VLM backend end to end: `extract_pages` with the replay model (the
hand-written MinerU-format fixture must come out exactly), hybrid text-layer
fill, recording, per-page errors, rotated pages; and the whole path on
samples/*.pdf with a tiny random checkpoint through `process_document`
(random weights: structure, statuses and timings are checked, not text)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pymupdf
import pytest
import torch

from docpipe.config import ConvertOptions
from docpipe.models.backend import extract_pages, page_geometry, _unrotate
from docpipe.models.vlm_page import make_layout_request
from docpipe.pipeline import process_document
from docpipe.schema import Block, PageResult, Status
from docpipe.writers.content_list import build_content_list
from docpipe.writers.markdown import render_markdown
import vlm_sample_page as sample_page
import vlm_tiny_checkpoint as tiny

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "fixtures" / "replay" / "sample_page"
REPLAY = f"replay:{FIXTURE / 'answers'}"
VLM_TIMINGS = {"render", "vlm_layout", "vlm_blocks", "assemble"}


@pytest.fixture(scope="module")
def sample_pdf(tmp_path_factory) -> Path:
    """The golden sample page, then a second page the replay folder knows nothing of."""
    path = tmp_path_factory.mktemp("vlm") / "sample.pdf"
    doc = pymupdf.open(stream=sample_page.build_pdf(), filetype="pdf")
    doc.new_page(width=300, height=300).insert_text((50, 50), "unrecorded page")
    doc.save(path)
    return path


def _pages(path, opts, indices=(0,)):
    with pymupdf.open(path) as doc:
        pages = list(extract_pages(doc, list(indices), opts))
    for block in (b for p in pages for b in p.blocks):  # what the file writer does
        if block.image:
            block.img_path = f"images/{hashlib.sha256(block.image).hexdigest()}.png"
    return pages


def test_replay_model_reproduces_the_golden_markdown_and_content_list(sample_pdf):
    pages = _pages(sample_pdf, ConvertOptions(backend="vlm", model=REPLAY))
    assert len(pages) == 1 and pages[0].ok and pages[0].source == "vlm"
    assert render_markdown(pages) == (FIXTURE / "expected.md").read_text(encoding="utf-8")
    assert build_content_list(pages) == json.loads((FIXTURE / "expected_content_list.json").read_text())
    assert VLM_TIMINGS <= set(pages[0].timings_s) and all(v >= 0 for v in pages[0].timings_s.values())


def test_hybrid_takes_plain_text_from_the_text_layer(sample_pdf):
    golden = _pages(sample_pdf, ConvertOptions(backend="vlm", model=REPLAY))[0]
    page = _pages(sample_pdf, ConvertOptions(backend="auto", model=REPLAY))[0]
    assert page.ok and page.source == "hybrid" and "text" in page.timings_s
    texts = [(b.text, b.source) for b in page.blocks if b.type == "text"]
    assert texts == [("Energy and mass are related by the equation below, where m is the mass and c the "
                      "speed of light.", "text_layer"),
                     ("Draft - not for distribution", "vlm")]  # rotated margin text: not a horizontal line
    same = [(b.type, b.text, b.bbox) for b in page.blocks if b.source == "vlm"]
    assert same == [(b.type, b.text, b.bbox) for b in golden.blocks if b.type != "text" or b.rotation]


def test_a_replay_miss_fails_only_its_page_and_recording_replays_identically(sample_pdf, tmp_path):
    pages = _pages(sample_pdf, ConvertOptions(backend="vlm", model=REPLAY, record=str(tmp_path / "rec")), (0, 1))
    assert [p.page_idx for p in pages] == [0, 1]
    assert pages[0].ok and not pages[1].ok
    assert pages[1].error.startswith("page 2: VLM mineru25: ReplayMissError") and "unrecorded" not in pages[1].error
    recorded = _pages(sample_pdf, ConvertOptions(backend="vlm", model=f"replay:{tmp_path / 'rec'}"))
    assert render_markdown(recorded) == render_markdown(pages[:1])


def test_rotated_page_boxes_are_mapped_to_the_unrotated_page():
    doc = pymupdf.open()
    page = doc.new_page(width=200, height=400)
    page.set_rotation(90)
    geo = page_geometry(page, hybrid=False)
    assert (geo.width_pt, geo.height_pt) == (400, 200)  # as displayed, like the render
    result = PageResult(0, geo.width_pt, geo.height_pt, blocks=[Block("text", (0.0, 0.0, 40.0, 20.0))])
    _unrotate(geo)(result)
    assert (result.width_pt, result.height_pt) == (200, 400)
    x0, y0, x1, y1 = result.blocks[0].bbox
    # the displayed top-left corner is the unrotated page's bottom-left
    assert (x1 - x0, y1 - y0) == pytest.approx((20, 40)) and (x0, y1) == pytest.approx((0, 400))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> str:
    return tiny.build_checkpoint(tmp_path_factory.mktemp("tiny_vlm_backend"))


def _sample_pdfs(tmp_path_factory) -> list[Path]:
    found = sorted((ROOT / "samples").glob("*.pdf"))
    if found:
        return found
    path = tmp_path_factory.mktemp("samples") / "made.pdf"  # samples/ not generated yet
    doc = pymupdf.open()
    for i in range(2):
        doc.new_page().insert_text((72, 72), f"Page {i + 1}: a made-up sample.")
    doc.save(path)
    return [path]


def _engine_opts(model: str, backend: str, **kw) -> ConvertOptions:
    # Random weights never say EOS: a short context clamps every answer (~250 tokens) to keep this fast.
    engine = {"device": "cpu", "mode": "eager", "num_kv_blocks": 1024, "max_num_seqs": 32, "max_model_len": 320}
    return ConvertOptions(backend=backend, model=model, extra={"vlm_engine": engine, "vlm_window_pages": 2}, **kw)


@pytest.mark.parametrize("backend", ["vlm", "auto"])
def test_whole_path_on_the_samples_with_a_tiny_random_checkpoint(backend, tiny_ckpt, tmp_path_factory, tmp_path):
    for pdf in _sample_pdfs(tmp_path_factory):
        record = tmp_path / pdf.stem
        result = process_document(str(pdf), _engine_opts(tiny_ckpt, backend, record=str(record)))
        with pymupdf.open(pdf) as doc:
            num_pages, first = doc.page_count, doc[0]
            layout_key = make_layout_request(pymupdf_render(first)).key
        assert result.status == Status.SUCCESS, result.error
        assert result.backend == ("vlm" if backend == "vlm" else "hybrid")
        assert [p.page_idx for p in result.pages] == list(range(num_pages))
        for page in result.pages:
            assert page.ok and page.source in ("vlm", "hybrid")
            assert VLM_TIMINGS <= set(page.timings_s)
            assert ("text" in page.timings_s) == (backend == "auto")
        assert result.timings_s["pages.vlm_layout_s"] > 0
        assert (record / f"{layout_key}.json").is_file()  # each answer was recorded under its request key


def pymupdf_render(page):
    from docpipe.ingest.render import render_page
    return render_page(page, 200)


def test_embedded_pd_layout_on_cpu(tiny_ckpt, tmp_path_factory, tmp_path):
    if importlib.util.find_spec("inference.disagg.llm") is None:
        pytest.skip("inference.disagg has no DisaggLLM yet: the PD layout cannot be run")
    pdf = _sample_pdfs(tmp_path_factory)[0]
    answers = {}
    for name, layout in (("embedded", None), ("pd", "local-cpu-1p1d")):
        opts = _engine_opts(tiny_ckpt, "vlm", layout=layout, pages="1", record=str(tmp_path / name))
        if layout:
            for key in ("device", "mode"):  # the layout file sets devices, dtypes and modes
                opts.extra["vlm_engine"].pop(key)
        result = process_document(str(pdf), opts)
        assert result.status == Status.SUCCESS, result.error
        assert [p.page_idx for p in result.pages] == [0] and VLM_TIMINGS <= set(result.pages[0].timings_s)
        answers[name] = {f.name: json.loads(f.read_text())["answer"] for f in (tmp_path / name).glob("*.json")}
    # prefill and decode in two processes, KV over shm: the same greedy answers as the embedded engine
    assert answers["pd"] == answers["embedded"] and answers["pd"]
