"""The Ray job with a disaggregated layout: local-cpu-1p1d's prefill, decode
and router run as PD pools (KV over tcp, since Ray may place them on
different nodes), the VLM document actors submit their pages to that router
and hold no engine, and the Markdown and every recorded VLM answer (random
weights: the layout answer is token soup that parses to no block, so the
answers are what carries the comparison) are the single-process embedded
run's, on one sample page with the VLM tests' tiny checkpoint. The shared token
appears in no log (the driver's, or any file of the Ray session) and no
whole-engine fallback is taken."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'docpipe[ray]')")

from docpipe.config import ConvertOptions  # noqa: E402
from docpipe.batch import write_outputs  # noqa: E402
from docpipe.pipeline import process_document  # noqa: E402
from inference.disagg.remote import TOKEN_ENV  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]
ROOT = Path(__file__).resolve().parents[3]
SAMPLES = sorted((ROOT / "samples").glob("*.pdf"))
TOKEN = "pd-job-token-8f3a1c"


def _tiny_checkpoint(path: Path) -> str:
    spec = importlib.util.spec_from_file_location(
        "_ray_pd_tiny", ROOT / "tests" / "docpipe" / "models" / "vlm_tiny_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_checkpoint(path)


def _markdown(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): p.read_text(encoding="utf-8") for p in out.rglob("*.md")}


def _answers(record: Path) -> dict[str, str]:
    return {p.name: json.loads(p.read_text())["answer"] for p in record.glob("*.json")}


def test_disaggregated_job_matches_the_single_process_markdown(tmp_path, monkeypatch, caplog):
    import docpipe.ray as dray

    if not SAMPLES:
        pytest.skip("samples/*.pdf not generated (python samples/make_samples.py)")
    ckpt = _tiny_checkpoint(tmp_path / "tiny")
    # Random weights never say EOS: a short context clamps every answer to keep this fast.
    engine = {"device": "cpu", "mode": "eager", "num_kv_blocks": 1024, "max_num_seqs": 32, "max_model_len": 160}
    opts = ConvertOptions(backend="vlm", model=ckpt, formats=("md",), pages="1",
                          extra={"vlm_engine": engine, "vlm_window_pages": 2})
    pdf = SAMPLES[0]
    want = process_document(str(pdf), dataclasses.replace(opts, record=str(tmp_path / "want-answers")))
    assert want.status.value == "success", want.error
    want.name = pdf.stem
    write_outputs(want, tmp_path / "want", opts)

    monkeypatch.setenv(TOKEN_ENV, TOKEN)  # the layout's token variable: the pools use it, so the test knows it
    place = dray.RayOptions(num_cpus_per_actor=1.0, num_cpus_per_pd_actor=0.25)
    pd_opts = dataclasses.replace(opts, layout="local-cpu-1p1d", record=str(tmp_path / "got-answers"))
    with caplog.at_level(logging.INFO):
        rows = list(dray.run_job([str(pdf)], str(tmp_path / "got"), opts=pd_opts, place=place))
    assert [(r["name"], r["status"]) for r in rows] == [(pdf.stem, "success")], rows
    got = _markdown(tmp_path / "got")
    assert got and got == _markdown(tmp_path / "want")
    answers = _answers(tmp_path / "got-answers")
    assert answers and all(answers.values()) and answers == _answers(tmp_path / "want-answers")

    assert "router at" in caplog.text and "whole-engine" not in caplog.text  # the pools ran, no fallback
    assert TOKEN not in caplog.text
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    leaked = [p.name for p in logs.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaked
    deadline = time.monotonic() + 20
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2  # the job stopped its pools (and Ray Data its actors)
