"""machine.finish: the command line a micro-benchmark records (every parsed option but --out) and its JSON."""
import argparse
import json

from inference.bench.machine import finish


def test_finish_records_the_command_and_writes_the_json(tmp_path):
    out = tmp_path / "r.json"
    args = argparse.Namespace(calls=50, max_num_seqs=8, skip=None, out=str(out))
    result = {"host_us": 1.5}
    finish(result, "inference.bench.linear_host", args)
    assert result["command"] == "python -m inference.bench.linear_host --calls 50 --max-num-seqs 8"
    assert json.loads(out.read_text()) == result


def test_finish_without_options_or_out_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = {}
    finish(result, "inference.bench.batch_build", argparse.Namespace(out=None))
    assert result["command"] == "python -m inference.bench.batch_build"
    assert not list(tmp_path.iterdir())
