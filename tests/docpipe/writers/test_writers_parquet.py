import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from docpipe.schema import Block, DocumentResult, PageResult, Status
from docpipe.writers import parquet


def _result(name="doc", status=Status.PARTIAL):
    ok = PageResult(0, 100.0, 100.0, blocks=[Block("title", (0, 0, 1, 1), text="Hello", level=1)])
    bad = PageResult(1, 100.0, 100.0, source="none", error="doc.pdf: page 2: broken")
    return DocumentResult(source_path=f"/in/{name}.pdf", name=name, doc_id="abc", num_pages=2,
                          pages=[ok, bad], markdown="# Hello\n", status=status,
                          error="doc.pdf: page 2: broken", backend="pipeline",
                          timings_s={"total_s": 1.5, "extract_s": 1.0})


def test_row_round_trip(tmp_path):
    path = parquet.write_part(_result(), tmp_path)
    assert path == tmp_path / "dataset" / "doc.parquet"
    table = pq.read_table(path)
    assert table.schema.equals(parquet.SCHEMA)
    (row,) = table.to_pylist()
    assert row["status"] == "partial" and row["num_pages"] == 2 and row["doc_id"] == "abc"
    assert [p["page_idx"] for p in row["pages"]] == [0, 1]
    assert row["pages"][0]["markdown"] == "# Hello\n" and row["pages"][0]["num_blocks"] == 1
    assert row["pages"][1]["error"] == "doc.pdf: page 2: broken" and row["pages"][1]["markdown"] == ""
    assert dict(row["timings_s"]) == {"total_s": 1.5, "extract_s": 1.0}


def test_rewrite_replaces_part_no_duplicates(tmp_path):
    parquet.write_part(_result(status=Status.FAILURE), tmp_path)
    parquet.write_part(_result(status=Status.SUCCESS), tmp_path)
    parquet.write_part(_result(name="other"), tmp_path)
    table = pq.read_table(tmp_path / "dataset")
    assert sorted(zip(table["name"].to_pylist(), table["status"].to_pylist())) == [
        ("doc", "success"), ("other", "partial")]
    assert parquet.read_part_meta(tmp_path, "doc") == {"source_path": "/in/doc.pdf", "status": "success"}
    assert parquet.read_part_meta(tmp_path, "missing") is None


def test_failed_write_leaves_previous_part(tmp_path, monkeypatch):
    parquet.write_part(_result(status=Status.SUCCESS), tmp_path)

    def boom(table, where):
        open(where, "wb").write(b"torn")
        raise OSError("disk full")

    monkeypatch.setattr(parquet.pq, "write_table", boom)
    with pytest.raises(OSError):
        parquet.write_part(_result(status=Status.FAILURE), tmp_path)
    assert [p.name for p in (tmp_path / "dataset").iterdir()] == ["doc.parquet"]
    assert parquet.read_part_meta(tmp_path, "doc")["status"] == "success"


def test_to_table_in_memory():
    table = parquet.to_table([_result(), _result(name="b")])
    assert isinstance(table, pa.Table) and table.num_rows == 2
    assert table["name"].to_pylist() == ["doc", "b"]
