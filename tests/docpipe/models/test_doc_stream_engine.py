"""Several documents through one engine with the tiny random checkpoint:
samples/*.pdf streamed together give exactly the outputs of converting each
file alone (`process_document`), while the engine saw the second document's
requests before the first one finished. A random model's layout answer
parses to nothing, so every page gets the same three blocks instead
(`FixedLayout`); their block answers are random but deterministic (greedy)
text of each crop, so any mix-up of answers between pages or documents, or
a batch-dependent answer, shows in the Markdown."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import vlm_tiny_checkpoint as tiny
from docpipe import batch
from docpipe.config import ConvertOptions
from docpipe.models import backend as vlm_backend
from docpipe.models import doc_stream
from docpipe.models.scheduler import PageFlow
from docpipe.schema import Status
from test_doc_stream import _first, _last, convert_alone, outputs, record_runner

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[3]
LAYOUT = ("<|box_start|>100 80 900 160<|box_end|><|ref_start|>title<|ref_end|><|rotate_up|>"
          "<|box_start|>100 200 900 500<|box_end|><|ref_start|>text<|ref_end|><|rotate_up|>"
          "<|box_start|>300 550 700 620<|box_end|><|ref_start|>equation<|ref_end|><|rotate_up|>")


class FixedLayout(PageFlow):
    def blocks(self, job, answer):
        return self.family.parse_layout(LAYOUT)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> str:
    return tiny.build_checkpoint(tmp_path_factory.mktemp("tiny_vlm_stream"))


def _opts(model: str, backend: str, window_pages: int) -> ConvertOptions:
    # Random weights never say EOS: a short context clamps every answer to keep this fast.
    engine = {"device": "cpu", "mode": "eager", "num_kv_blocks": 1024, "max_num_seqs": 32, "max_model_len": 320}
    return ConvertOptions(backend=backend, model=model, formats="md,json",
                          extra={"vlm_engine": engine, "vlm_window_pages": window_pages})


@pytest.mark.parametrize("backend", ["vlm", "auto"])
def test_samples_streamed_together_match_each_alone(backend, tiny_ckpt, tmp_path, monkeypatch):
    sources = sorted((ROOT / "samples").glob("*.pdf"))
    if len(sources) < 2:
        pytest.skip("needs two samples/*.pdf (samples/make_samples.py makes them)")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for source in sources:
        shutil.copy(source, inputs / source.name)
    monkeypatch.setattr(doc_stream, "PageFlow", FixedLayout)
    monkeypatch.setattr(vlm_backend, "PageFlow", FixedLayout)
    made = record_runner(monkeypatch, gate_docs=2)
    results = list(batch.convert_iter([inputs], tmp_path / "out", _opts(tiny_ckpt, backend, 4)))
    assert [Path(r.source_path).name for r in results] == [s.name for s in sources]
    assert all(r.status == Status.SUCCESS for r in results), [r.error for r in results]
    assert all(sum(b.source == "vlm" for b in r.blocks) >= 2 * len(r.pages) for r in results)  # model text in
    first, second = (s.stem for s in sources)
    log = made[0].log
    assert _first(log, "submit", second) < _last(log, "finish", first)  # across the document boundary
    alone = convert_alone(sorted(inputs.glob("*.pdf")), tmp_path / "alone", _opts(tiny_ckpt, backend, 2))
    assert outputs(tmp_path / "out") == alone
