"""The VLM backend on Ray: whole-engine actors (model loaded once per actor)
give the same documents as the single-process run, on samples/*.pdf with a
tiny random checkpoint; an actor whose process dies mid-document is restarted and every
document still appears exactly once.

The checkpoint is the VLM tests' saved tiny Qwen2-VL (its image processor
caps a page at 64 image tokens). `dummy:tiny` keeps the default processor:
a 1036x1036 layout image is 1,369 image tokens, minutes per page on these
shared CPU cores, so it is not used here."""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'docpipe[ray]')")
import pyarrow.parquet as pq  # noqa: E402

from docpipe.config import ConvertOptions  # noqa: E402
from docpipe.pipeline import process_document  # noqa: E402
from docpipe.writers import parquet  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]
ROOT = Path(__file__).resolve().parents[3]
SAMPLES = sorted((ROOT / "samples").glob("*.pdf"))


def _load(name: str):
    path = ROOT / "tests" / "docpipe" / "models" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_ray_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def opts(tmp_path_factory) -> ConvertOptions:
    if not SAMPLES:
        pytest.skip("samples/*.pdf not generated (python samples/make_samples.py)")
    ckpt = _load("vlm_tiny_checkpoint").build_checkpoint(tmp_path_factory.mktemp("tiny"))
    # Random weights never say EOS: a short context clamps every answer to keep this fast.
    engine = {"device": "cpu", "mode": "eager", "num_kv_blocks": 1024, "max_num_seqs": 32, "max_model_len": 160}
    return ConvertOptions(backend="vlm", model=ckpt, formats=("parquet",), pages="1",  # one page: CI time
                          extra={"vlm_engine": engine, "vlm_window_pages": 2})


def _rows(dataset: Path) -> dict[str, dict]:
    rows = pq.read_table(dataset, schema=parquet.SCHEMA).to_pylist()
    assert len({r["name"] for r in rows}) == len(rows), "a document appears twice"
    return {r["name"]: {k: v for k, v in r.items() if k not in ("timings_s", "source_path")} for r in rows}


def crash_once(source: str, opts: ConvertOptions):
    """Kills its actor's process the first time it meets the marker file."""
    marker = Path(opts.extra["crash_marker"])
    if Path(source).name == SAMPLES[0].name and marker.exists():
        marker.unlink()
        os._exit(1)
    return process_document(source, opts)


def test_vlm_actors_match_the_single_process_run_and_survive_an_actor_kill(opts, tmp_path):
    import docpipe.ray as dray

    want = {}
    for pdf in SAMPLES:
        result = process_document(str(pdf), opts)
        result.name = pdf.stem
        want[pdf.stem] = parquet.to_row(result)
    assert all(r["status"] == "success" for r in want.values()), [r["error"] for r in want.values()]

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
    marker = tmp_path / "crash-once"
    marker.touch()
    crash_opts = dataclasses.replace(opts, extra={**opts.extra, "crash_marker": str(marker)})
    rows = list(dray.run_job([str(p) for p in SAMPLES], str(tmp_path / "out"), opts=crash_opts, fn=crash_once))
    assert not marker.exists(), "the actor was never killed"
    assert sorted((r["name"], r["status"]) for r in rows) == sorted((p.stem, "success") for p in SAMPLES)
    got = _rows(tmp_path / "out" / "dataset")
    for row in want.values():
        row.pop("timings_s"), row.pop("source_path")
    assert got == want
