"""`docpipe convert` end to end through typer's CliRunner."""
import re

import pyarrow.parquet as pq
from batch_pdfs import in_process, make_bad_folder, make_pdf  # noqa: F401 (fixture)
from typer.testing import CliRunner

from docpipe import pipeline
from docpipe.cli import app

cli = CliRunner()


def test_bad_inputs_reported_batch_goes_on(tmp_path):
    """Real worker pool: a good PDF, a truncated PDF, a text file named .pdf
    and an encrypted PDF."""
    make_bad_folder(tmp_path / "in")
    out = tmp_path / "out"
    res = cli.invoke(app, ["convert", str(tmp_path / "in"), "--out", str(out), "--workers", "2"])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())  # the summary may wrap on narrow terminals
    assert "truncated.pdf: truncated" in text or "truncated.pdf: corrupt" in text
    assert "notes.pdf: not a PDF" in text
    assert "locked.pdf: encrypted: password required" in text
    assert "good.pdf" not in text.split("docpipe convert summary")[0]  # not listed as a problem
    assert "The good document converts." in (out / "good" / "good.md").read_text()
    rows = {r["name"]: r for r in pq.read_table(out / "dataset").to_pylist()}
    assert {n: r["status"] for n, r in rows.items()} == {
        "good": "success", "truncated": "failure", "notes": "failure", "locked": "failure"}
    assert "password" in rows["locked"]["error"] and "not a PDF" in rows["notes"]["error"]
    assert rows["good"]["num_pages"] == 2 and len(rows["good"]["pages"]) == 2
    assert not (out / "notes").exists()  # failed documents leave no Markdown folder


def test_rerun_skips_and_force_redoes(tmp_path, in_process):
    make_pdf(tmp_path / "in" / "doc.pdf", ["Some text."])
    args = ["convert", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--ocr", "never"]
    assert cli.invoke(app, args).exit_code == 0
    md = tmp_path / "out" / "doc" / "doc.md"
    md.write_text("edited")
    res = cli.invoke(app, args)
    assert res.exit_code == 0 and md.read_text() == "edited"
    assert re.search(r"skipped \(already done\)\W+1\b", res.output), res.output
    res = cli.invoke(app, [*args, "--force"])
    assert res.exit_code == 0 and md.read_text().strip() == "Some text."


def test_formats_pages_and_table_format_pass_through(tmp_path, in_process):
    make_pdf(tmp_path / "doc.pdf", ["first page", "second page"])
    out = tmp_path / "out"
    res = cli.invoke(app, ["convert", str(tmp_path / "doc.pdf"), "--out", str(out), "--format", "parquet",
                           "--pages", "2", "--table-format", "html", "--ocr", "never"])
    assert res.exit_code == 0, res.output
    assert not (out / "doc").exists()
    (row,) = pq.read_table(out / "dataset").to_pylist()
    assert [p["page_idx"] for p in row["pages"]] == [1] and "second page" in row["markdown"]


def test_usage_errors_exit_2(tmp_path):
    res = cli.invoke(app, ["convert", str(tmp_path), "--out", str(tmp_path / "o"), "--format", "xml"])
    assert res.exit_code == 2 and "unknown formats" in res.output
    res = cli.invoke(app, ["convert", str(tmp_path), "--out", str(tmp_path / "o"), "--backend", "vlm"])
    assert res.exit_code == 2 and "VLM backend not available" in res.output


def test_vlm_missing_stack_is_not_silently_pipeline(tmp_path, monkeypatch):
    make_pdf(tmp_path / "doc.pdf", ["x"])
    monkeypatch.setitem(pipeline.BACKEND_MODULES, "vlm", "docpipe.no_such_vlm_module")
    monkeypatch.setitem(pipeline.BACKEND_MODULES, "hybrid", "docpipe.no_such_vlm_module")
    for backend in ("vlm", "auto"):  # auto + --model means hybrid, which needs the VLM too
        res = cli.invoke(app, ["convert", str(tmp_path / "doc.pdf"), "--out", str(tmp_path / "o"),
                               "--backend", backend, "--model", "dummy:tiny", "--layout", "local-cpu.toml"])
        assert res.exit_code == 2, res.output
        assert "VLM backend not available: " in res.output and "no_such_vlm_module" in res.output
    assert not (tmp_path / "o").exists()


def test_no_pdfs_found(tmp_path):
    (tmp_path / "empty").mkdir()
    res = cli.invoke(app, ["convert", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "no .pdf files" in res.output
