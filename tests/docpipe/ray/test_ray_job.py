"""The Ray job against the single-process run, on samples/*.pdf: same
documents (Markdown, content_list, Parquet rows except timings), resume,
URIs through pyarrow filesystems, convert_dataset, and a worker that dies
mid-job (every document still appears exactly once)."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'docpipe[ray]')")
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from docpipe import runner  # noqa: E402
from docpipe.cli import app  # noqa: E402
from docpipe.config import ConvertOptions  # noqa: E402
from docpipe.batch import convert_iter  # noqa: E402
from docpipe.pipeline import process_document  # noqa: E402
from docpipe.writers import parquet  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]
ROOT = Path(__file__).resolve().parents[3]
SAMPLES = sorted((ROOT / "samples").glob("*.pdf"))


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    if not SAMPLES:
        pytest.skip("samples/*.pdf not generated (python samples/make_samples.py)")
    folder = tmp_path_factory.mktemp("in")
    for pdf in SAMPLES:
        shutil.copy(pdf, folder / pdf.name)
    return folder


@pytest.fixture(scope="module")
def single(samples, tmp_path_factory) -> Path:
    """The single-process run's outputs (documents in this process: no worker spawn)."""
    out = tmp_path_factory.mktemp("single")
    real = runner.run_documents
    runner.run_documents = lambda s, fn, o, on_pages=None: real(s, fn, o, on_pages=on_pages, in_process=True)
    try:
        list(convert_iter([str(samples)], out, ConvertOptions(backend="pipeline")))
    finally:
        runner.run_documents = real
    return out


def rows_without_timings(dataset) -> dict[str, dict]:
    rows = pq.read_table(dataset, schema=parquet.SCHEMA).to_pylist()
    for row in rows:
        row.pop("timings_s")
    by_name = {r["name"]: r for r in rows}
    assert len(by_name) == len(rows), "a document appears twice"
    return by_name


def tree(out: Path) -> dict[str, bytes]:
    """Every output file but the Parquet parts (compared as rows)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and "dataset" not in p.parts}


def test_cli_ray_local_matches_the_single_process_run(samples, single, tmp_path):
    out = tmp_path / "ray"
    res = CliRunner().invoke(app, ["convert", str(samples), "--out", str(out), "--backend", "pipeline",
                                   "--ray", "local"])
    assert res.exit_code == 0, res.output
    assert len(SAMPLES) > 0 and tree(out) == tree(single)
    assert rows_without_timings(out / "dataset") == rows_without_timings(single / "dataset")
    manifests = [json.loads((out / p.stem / ".docpipe.json").read_text()) for p in SAMPLES]
    assert [m["status"] for m in manifests] == ["success"] * len(SAMPLES)

    again = CliRunner().invoke(app, ["convert", str(samples), "--out", str(out), "--backend", "pipeline",
                                     "--ray", "local"])
    assert again.exit_code == 0, again.output
    assert re.search(rf"skipped \(already done\)\W+{len(SAMPLES)}\b", again.output), again.output


def test_same_bytes_under_another_name_are_skipped_by_doc_id(samples, single, tmp_path):
    import docpipe.ray as dray

    out = tmp_path / "out"
    shutil.copytree(single, out)
    twin = tmp_path / "more" / "copy_of_first.pdf"
    twin.parent.mkdir()
    shutil.copy(SAMPLES[0], twin)
    plan = dray.plan_job([str(samples), str(twin.parent)], str(out), ConvertOptions(backend="pipeline"))
    assert [i["path"] for i in plan.items] == [str(twin)] and len(plan.skipped) == len(SAMPLES)
    rows = list(dray.job.run_plan(plan, ConvertOptions(backend="pipeline")))
    assert [(r["name"], r["status"]) for r in rows] == [("copy_of_first", "skipped")]
    assert SAMPLES[0].stem in rows[0]["error"] and not (out / "copy_of_first").exists()


def crash_once(source: str, opts: ConvertOptions):
    """Kills its worker process the first time it meets the marker file."""
    marker = Path(opts.extra["crash_marker"])
    if Path(source).name == SAMPLES[0].name and marker.exists():
        marker.unlink()
        os._exit(1)
    return process_document(source, opts)


def test_a_worker_killed_mid_job_costs_only_a_retry(samples, single, tmp_path):
    import docpipe.ray as dray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
    marker = tmp_path / "crash-once"
    marker.touch()
    opts = ConvertOptions(backend="pipeline", extra={"crash_marker": str(marker)})
    rows = list(dray.run_job([str(samples)], str(tmp_path / "out"), opts=opts, fn=crash_once))
    assert not marker.exists(), "the crash was never triggered"
    assert sorted(r["name"] for r in rows) == sorted(p.stem for p in SAMPLES)
    assert {r["status"] for r in rows} == {"success"}
    assert rows_without_timings(tmp_path / "out" / "dataset") == rows_without_timings(single / "dataset")


def test_uris_read_bytes_and_write_the_dataset_through_pyarrow(samples, single, tmp_path):
    import docpipe.ray as dray

    out = f"file://{tmp_path / 'remote'}"
    rows = list(dray.run_job([f"file://{samples}"], out, backend="pipeline"))
    assert sorted((r["name"], r["status"]) for r in rows) == sorted((p.stem, "success") for p in SAMPLES)
    got = rows_without_timings(tmp_path / "remote" / "dataset")
    want = rows_without_timings(single / "dataset")
    assert {n: r["source_path"] for n, r in got.items()} == {p.stem: f"file://{samples}/{p.name}" for p in SAMPLES}
    for row in (*got.values(), *want.values()):
        row.pop("source_path")
    assert got == want
    assert not (tmp_path / "remote" / SAMPLES[0].stem).exists()  # Markdown folders only on a local out
    assert list(dray.run_job([f"file://{samples}"], out, backend="pipeline")) == []  # resumed: nothing to do


def test_convert_dataset_takes_bytes_and_returns_parquet_rows(single):
    import docpipe.ray as dray

    items = [{"path": f"uploads/{p.name}", "bytes": p.read_bytes()} for p in SAMPLES]
    items.append({"path": "uploads/not_a.pdf", "bytes": b"hello"})
    ds = dray.convert_dataset(ray.data.from_items(items), backend="pipeline")
    got = pa.concat_tables([ray.get(t) for t in ds.to_arrow_refs()])
    assert got.schema == parquet.SCHEMA
    rows = {r["name"]: r for r in got.to_pylist()}
    assert rows["not_a"]["status"] == "failure" and "not a PDF" in rows["not_a"]["error"]
    assert "uploads/not_a.pdf" in rows["not_a"]["error"]  # errors name the source, not a temp copy
    want = rows_without_timings(single / "dataset")
    for name, row in want.items():
        assert rows[name]["markdown"] == row["markdown"] and rows[name]["doc_id"] == row["doc_id"]
        assert rows[name]["pages"] == row["pages"]
