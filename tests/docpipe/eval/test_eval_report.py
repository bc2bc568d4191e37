import json

from typer.testing import CliRunner

from docpipe.cli import app
from docpipe.eval.report import evaluate_dirs
from docpipe.eval.text import ned

REF_A = "# A\n\nHello world.\n\n| k | v |\n|---|---|\n| 1 | 2 |\n"
REF_B = "# B\n\nOnly text here.\n"


def _dirs(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir()
    (ref / "a.md").write_text(REF_A)
    (ref / "b.md").write_text(REF_B)
    (ref / "c.md").write_text("Never predicted.\n")
    (pred / "a").mkdir(parents=True)  # docpipe layout: <stem>/<stem>.md
    (pred / "a" / "a.md").write_text("# A\n\nHello world!\n\n<table><tr><td>k</td><td>v</td></tr>"
                                     "<tr><td>1</td><td>3</td></tr></table>\n")
    (pred / "b.md").write_text(REF_B)  # flat layout
    return pred, ref


def test_report(tmp_path):
    pred, ref = _dirs(tmp_path)
    report = evaluate_dirs(pred, ref)
    by = {f.name: f for f in report.files}
    assert by["b.md"].ned == 0.0 and by["b.md"].teds is None
    assert by["a.md"].ned == ned((pred / "a" / "a.md").read_text(), REF_A)
    assert by["a.md"].teds == 1 - 1 / 7
    assert by["c.md"].ned == 1.0 and not by["c.md"].has_prediction
    assert report.mean_ned == (by["a.md"].ned + 0.0 + 1.0) / 3
    assert report.mean_teds == by["a.md"].teds


def test_cli_json_and_table(tmp_path):
    pred, ref = _dirs(tmp_path)
    res = CliRunner().invoke(app, ["eval", str(pred), str(ref), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["num_files"] == 3 and data["num_files_with_tables"] == 1
    assert data["mean_ned"] == evaluate_dirs(pred, ref).mean_ned
    res = CliRunner().invoke(app, ["eval", str(pred), str(ref)])
    assert res.exit_code == 0 and "MEAN" in res.output and "c.md (missing)" in res.output
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "nope"), str(ref)])
    assert res.exit_code == 2 and "not found" in res.output
