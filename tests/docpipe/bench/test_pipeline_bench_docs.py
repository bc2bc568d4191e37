"""`docpipe bench pipeline --pages P --docs N` on the CPU: the synthetic
workload split over generated PDFs goes through the convert path's document
stream and does exactly the workload's forced work (speed is not asserted)."""
from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from docpipe.bench.pipeline_jobs import scaled
from docpipe.bench.pipeline_docs import split_pages
from docpipe.bench.workload import mineru_synthetic, totals
from docpipe.cli import app

torch.set_num_threads(1)  # 2 shared cores: intra-op threads only contend


def test_split_pages_covers_every_page_once():
    assert split_pages(7, 3) == [3, 2, 2] and split_pages(2, 2) == [1, 1] and sum(split_pages(100, 7)) == 100


def test_bench_pipeline_over_several_documents_on_cpu(tmp_path):
    out = tmp_path / "pipeline.json"
    args = ["bench", "pipeline", "--model", "dummy:tiny", "--pages", "3", "--docs", "2", "--device", "cpu",
            "--window", "4", "--baseline", "none", "--warmup-pages", "0", "--output-scale", "0.05",
            "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    doc = json.loads(out.read_text())
    (engine,) = doc["sides"]
    work = mineru_synthetic(3, 0)
    assert doc["documents"] == 2 and engine["documents"] == 2
    assert engine["pages"] == 3 and engine["failed_pages"] == 0, engine["errors"]
    assert engine["requests"] == totals(work)["requests"]
    assert engine["output_tokens"] == sum(scaled(r.output_tokens, 0.05) for p in work for r in p)
    assert engine["render_s"] > 0 and engine["vision_s"] > 0 and engine["decode_s"] > 0


def test_docs_needs_enough_pages(tmp_path):
    res = CliRunner().invoke(app, ["bench", "pipeline", "--pages", "1", "--docs", "2", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "--docs" in res.output
