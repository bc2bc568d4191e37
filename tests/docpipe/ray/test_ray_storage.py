"""Remote output writes: any write error fails only that document (no Ray needed)."""
from docpipe.config import ConvertOptions
from docpipe.ray.storage import OutputStore
from docpipe.schema import DocumentResult, Status


def test_a_pyarrow_error_on_a_remote_write_fails_only_that_document(tmp_path, monkeypatch):
    store = OutputStore(f"file://{tmp_path}")
    assert not store.is_local

    def bad_row(result):
        raise TypeError("Expected bytes, got a 'int' object")  # what pyarrow raises for a bad column

    monkeypatch.setattr(store, "_write_remote_part", bad_row)
    result = DocumentResult(source_path="/in/report.pdf", name="report")
    store.write(result, ConvertOptions(formats=("parquet",)))
    assert result.status == Status.FAILURE
    assert result.error.startswith("report: cannot write outputs to file://") and "TypeError" in result.error
