"""The engine benchmark's code path on the CPU with the tiny preset: every
section runs, ours and transformers agree on the same weights."""
import json

import pytest
import torch
from typer.testing import CliRunner

from docpipe.cli import app


@pytest.mark.slow
def test_bench_engine_tiny_cpu(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "engine.json"
    args = ["bench", "engine", "--preset", "tiny", "--dtype", "float32", "--device", "cpu", "--mode", "eager",
            "--concurrency", "4", "--decode-tokens", "8", "--layout-pages", "2", "--hf-batch", "2",
            "--hf-tokens", "4", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    res = json.loads(out.read_text())
    assert result.exit_code == 0, (result.output, res.get("errors"))
    assert res["correctness"]["teacher_forced_logits_rel_err"] < 1e-4
    assert res["correctness"]["layout_page_teacher_forced_logits_rel_err"] < 1e-4
    assert res["correctness"]["fp32_greedy_tokens_identical"] is True
    assert res["ours"]["output_tokens"] == 4 * 8
    assert res["ours"]["layout_prefill_pages_per_s"] > 0 and res["hf"]["bs2_tok_per_s"] > 0
    walls = res["ours"]["layout_prefill_walls_s"]  # the figure is the median of the timed passes
    assert len(walls) == 3 and res["ours"]["layout_prefill_pages_per_s"] == pytest.approx(
        res["ours"]["layout_pages"] / sorted(walls)[1])
