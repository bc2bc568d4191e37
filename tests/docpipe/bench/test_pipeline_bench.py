"""`docpipe bench pipeline` smoke test on the CPU: two mineru-synthetic
pages on `dummy:tiny`, our engine side by side with transformers generate();
checks that both sides did the same forced work and that every reported
figure is there and consistent (speed itself is not asserted on a CPU).
Output lengths are scaled to a quarter to keep the test within seconds."""
from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from docpipe.bench.pipeline_jobs import scaled
from docpipe.bench.workload import mineru_synthetic, totals
from docpipe.cli import app

torch.set_num_threads(1)  # 2 shared cores: intra-op threads only contend


def test_bench_pipeline_smoke_on_cpu(tmp_path):
    out = tmp_path / "pipeline.json"
    args = ["bench", "pipeline", "--model", "dummy:tiny", "--pages", "2", "--device", "cpu", "--window", "2",
            "--hf-batch", "16", "--warmup-pages", "0", "--output-scale", "0.25", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "pages/s ratio engine / transformers" in res.output
    doc = json.loads(out.read_text())
    assert doc["command"].startswith("docpipe bench pipeline") and doc["device"] and doc["versions"]["torch"]
    engine, hf = doc["sides"]
    work = mineru_synthetic(2, 0)
    for side in (engine, hf):
        assert side["pages"] == 2 and side["failed_pages"] == 0, side["errors"]
        assert side["requests"] == totals(work)["requests"]
        # forced lengths: exactly the workload's output tokens (scaled for speed) on both sides
        assert side["output_tokens"] == sum(scaled(r.output_tokens, 0.25) for p in work for r in p)
        assert 0 < side["busy_fraction"] <= 1.0
        assert side["pages_per_s"] == 2 / side["wall_s"]
    assert engine["vision_s"] > 0 and engine["prefill_s"] > 0 and engine["decode_s"] > 0
    assert engine["vision_s"] + engine["prefill_s"] + engine["decode_s"] <= engine["wall_s"]
    assert hf["generate_s"] > 0
    assert doc["pages_per_s_ratio"] == engine["pages_per_s"] / hf["pages_per_s"]
