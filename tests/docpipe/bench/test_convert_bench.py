"""`docpipe bench convert` runs end to end on the samples."""
def test_bench_convert_runs_on_samples(tmp_path):
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from docpipe.cli import app

    samples = Path(__file__).resolve().parents[3] / "samples"
    out = tmp_path / "convert.json"
    result = CliRunner().invoke(app, ["bench", "convert", str(samples), "--repeat", "2", "--workers", "1",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert res["workers_1"]["failed_documents"] == 0
    assert res["workers_1"]["pages"] == 2 * res["raw_pages"] > 0  # each repeat is converted
