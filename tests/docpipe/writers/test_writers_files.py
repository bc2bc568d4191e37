import json

import pytest

from docpipe.schema import Block, DocumentResult, PageResult, Status
from docpipe.writers import files


def _result(name="doc", markdown="# Doc\n", image=b"\x89PNG fake"):
    block = Block("image", (0, 0, 10, 10), image=image, img_path="images/abc.png")
    page = PageResult(0, 100.0, 100.0, blocks=[block])
    return DocumentResult(source_path=f"/in/{name}.pdf", name=name, doc_id="d1", num_pages=1,
                          pages=[page], markdown=markdown, content_list=[{"type": "image"}])


def test_layout_matches_mineru(tmp_path):
    final = files.write_document(_result(), tmp_path, ("md", "json"))
    assert final == tmp_path / "doc"
    assert (final / "doc.md").read_text() == "# Doc\n"
    assert json.loads((final / "doc_content_list.json").read_text()) == [{"type": "image"}]
    assert (final / "images" / "abc.png").read_bytes() == b"\x89PNG fake"
    meta = files.read_manifest(tmp_path, "doc")
    assert meta["source_path"] == "/in/doc.pdf" and meta["status"] == "success"
    assert meta["formats"] == ["md", "json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_only_requested_formats(tmp_path):
    final = files.write_document(_result(), tmp_path, ("json",))
    assert not (final / "doc.md").exists() and (final / "doc_content_list.json").exists()


def test_replace_is_whole_folder(tmp_path):
    files.write_document(_result(markdown="old\n"), tmp_path, ("md", "json"))
    (tmp_path / "doc" / "stray.txt").write_text("from the old run")
    files.write_document(_result(markdown="new\n"), tmp_path, ("md",))
    assert (tmp_path / "doc" / "doc.md").read_text() == "new\n"
    assert not (tmp_path / "doc" / "stray.txt").exists()
    assert not (tmp_path / "doc" / "doc_content_list.json").exists()


def test_failed_write_leaves_old_output_and_no_temp(tmp_path, monkeypatch):
    files.write_document(_result(markdown="old\n"), tmp_path, ("md",))

    def boom(tmp, result, formats):
        (tmp / "doc.md").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(files, "_fill", boom)
    with pytest.raises(OSError):
        files.write_document(_result(markdown="new\n"), tmp_path, ("md",))
    assert (tmp_path / "doc" / "doc.md").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc"]


def test_clean_stale_removes_killed_run_leftovers(tmp_path):
    (tmp_path / ".tmp-doc-123").mkdir()
    (tmp_path / ".old-doc-456").mkdir()
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / ".tmp-doc-1.parquet").write_bytes(b"torn")
    (tmp_path / "kept").mkdir()
    assert files.clean_stale(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "kept"]


def test_kill_between_the_renames_restores_the_old_output(tmp_path, monkeypatch):
    files.write_document(_result(name="my-doc", markdown="old\n"), tmp_path, ("md",))
    real_rename = files.os.rename

    def killed_after_moving_aside(src, dst):
        real_rename(src, dst)
        if str(dst).endswith("/d"):
            raise KeyboardInterrupt  # the process dies before the new folder is moved in

    monkeypatch.setattr(files.os, "rename", killed_after_moving_aside)
    with pytest.raises(KeyboardInterrupt):
        files.write_document(_result(name="my-doc", markdown="new\n"), tmp_path, ("md",))
    monkeypatch.setattr(files.os, "rename", real_rename)
    assert not (tmp_path / "my-doc").exists()
    assert files.clean_stale(tmp_path) == 1
    assert (tmp_path / "my-doc" / "my-doc.md").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-doc"]


def test_names_disambiguate_same_stem(tmp_path):
    names = files.assign_names(["a/report.pdf", "b/report.pdf", "c/other.PDF"])
    assert names["c/other.PDF"] == "other"
    assert len({names["a/report.pdf"], names["b/report.pdf"]}) == 2
    assert names["a/report.pdf"] == "report"  # first in path order keeps the plain stem
    assert names["b/report.pdf"].startswith("report-")
    again = files.assign_names(["c/other.PDF", "b/report.pdf", "a/report.pdf"])
    assert again == names  # input order does not matter: same names on every run


def test_names_avoid_folder_owned_by_another_source():
    owners = {"report": files.source_key("elsewhere/report.pdf")}
    names = files.assign_names(["a/report.pdf"], owner_of=owners.get)
    assert names["a/report.pdf"].startswith("report-")
    same = files.assign_names(["elsewhere/report.pdf"], owner_of=owners.get)
    assert same == {"elsewhere/report.pdf": "report"}


def test_safe_stem():
    assert files.safe_stem("/x/My Report (v2).pdf") == "My_Report_v2"
    assert files.safe_stem("/x/.pdf") == "document"


def test_status_enum_stored_as_value(tmp_path):
    r = _result()
    r.status = Status.PARTIAL
    files.write_document(r, tmp_path, ("md",))
    assert files.read_manifest(tmp_path, "doc")["status"] == "partial"
