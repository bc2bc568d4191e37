"""discover(): files, folders (recursive) and globs to sorted, unique sources."""
from __future__ import annotations

import os

from docpipe.ingest.sources import Source, discover


def _touch(path, data=b"%PDF-1.4\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def test_folder_is_searched_recursively_sorted_and_hidden_skipped(tmp_path):
    for name in ["b.pdf", "a.PDF", "sub/c.pdf", "sub/deeper/d.pdf", "notes.txt", ".hidden/e.pdf", ".f.pdf"]:
        _touch(tmp_path / name)
    paths = [s.path for s in discover(str(tmp_path))]
    expected = ["a.PDF", "b.pdf", "sub/c.pdf", "sub/deeper/d.pdf"]
    assert paths == sorted(str(tmp_path / p) for p in expected)


def test_explicit_file_is_taken_whatever_its_extension(tmp_path):
    path = _touch(tmp_path / "scan.bin")
    assert discover([path]) == [Source(path)]


def test_globs_and_duplicates(tmp_path):
    a, b = _touch(tmp_path / "x" / "a.pdf"), _touch(tmp_path / "y" / "b.pdf")
    _touch(tmp_path / "x" / "skip.txt")
    inputs = [str(tmp_path / "**" / "*.pdf"), a, str(tmp_path / "x"), str(tmp_path / "x" / ".." / "x" / "a.pdf")]
    assert [s.path for s in discover(inputs)] == [a, b]


def test_glob_matching_a_folder_expands_it(tmp_path):
    a = _touch(tmp_path / "batch1" / "a.pdf")
    assert [s.path for s in discover(str(tmp_path / "batch*"))] == [a]


def test_duds_become_error_entries_and_the_rest_is_kept(tmp_path):
    good = _touch(tmp_path / "good.pdf")
    (tmp_path / "empty_dir").mkdir()
    missing, empty_dir, no_match = str(tmp_path / "missing.pdf"), str(tmp_path / "empty_dir"), str(tmp_path / "*.xyz.pdf")
    sources = {s.path: s for s in discover([missing, good, empty_dir, no_match])}
    assert sources[good].ok
    assert sources[missing].error == "file or folder not found"
    assert sources[empty_dir].error == "folder contains no .pdf files"
    assert sources[no_match].error == "no .pdf file matches this pattern"
    assert len(sources) == 4


def test_relative_inputs_stay_relative(tmp_path, monkeypatch):
    _touch(tmp_path / "docs" / "a.pdf")
    monkeypatch.chdir(tmp_path)
    assert [s.path for s in discover("docs")] == [os.path.join("docs", "a.pdf")]
