"""Without the ray extra: `docpipe.ray` still imports, and every entry point
fails with the install hint (the import failure is simulated)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from docpipe.cli import app

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def no_ray(monkeypatch):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError


def test_module_imports_and_functions_say_how_to_install(no_ray, tmp_path):
    import docpipe.ray as dray

    with pytest.raises(dray.RayNotInstalled, match=r"ray is not installed: pip install 'docpipe\[ray\]'"):
        dray.convert_dataset(object(), backend="pipeline")
    with pytest.raises(dray.RayNotInstalled, match="pip install 'docpipe"):
        list(dray.run_job([str(ROOT / "samples")], str(tmp_path), backend="pipeline"))


def test_cli_ray_exits_2_with_the_install_hint(no_ray, tmp_path):
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%%EOF\n")
    res = CliRunner().invoke(app, ["convert", str(pdf), "--out", str(tmp_path / "out"), "--ray", "local"])
    assert res.exit_code == 2, res.output
    assert "ray is not installed: pip install 'docpipe[ray]'" in " ".join(res.output.split())
    assert not (tmp_path / "out").exists()  # nothing planned or written

