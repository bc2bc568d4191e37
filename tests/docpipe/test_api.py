import pytest
from batch_pdfs import in_process, make_bad_folder, make_pdf  # noqa: F401 (fixture)

import docpipe
from docpipe.api import to_arrow
from docpipe.config import ConvertOptions
from docpipe.schema import DocumentResult, Status


def test_in_memory_without_output_dir(tmp_path, in_process):
    make_pdf(tmp_path / "in" / "a.pdf", ["Alpha text here."])
    make_pdf(tmp_path / "in" / "b.pdf", ["Beta text here.", "More beta."])
    before = sorted(tmp_path.rglob("*"))
    results = list(docpipe.convert(tmp_path / "in", ocr="never"))
    assert all(isinstance(r, DocumentResult) for r in results)
    assert sorted(r.name for r in results) == ["a", "b"]
    assert all(r.status == Status.SUCCESS for r in results)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
    df = to_arrow(results).to_pandas()
    assert sorted(df["num_pages"]) == [1, 2]
    assert df.set_index("name").loc["a", "markdown"].strip() == "Alpha text here."


def test_options_object_and_bad_options(tmp_path, in_process):
    pdf = make_pdf(tmp_path / "a.pdf", ["one", "two"])
    (r,) = docpipe.convert(str(pdf), options=ConvertOptions(pages="2", ocr="never"))
    assert [p.page_idx for p in r.pages] == [1]
    with pytest.raises(ValueError, match="backend"):
        docpipe.convert(str(pdf), backend="gpu")  # raised at the call, before iterating
    with pytest.raises(TypeError):
        docpipe.convert(str(pdf), options=ConvertOptions(), pages="1")


def test_with_output_dir_resumes(tmp_path, in_process):
    folder = make_bad_folder(tmp_path / "in")
    out = tmp_path / "out"
    first = {r.name: r for r in docpipe.convert(tmp_path / "in", out, ocr="never")}
    assert first["good"].status == Status.SUCCESS
    assert {n for n, r in first.items() if r.status == Status.FAILURE} == {"truncated", "notes", "locked"}
    assert (out / "good" / "good.md").exists() and (out / "dataset" / "good.parquet").exists()
    again = [r.name for r in docpipe.convert(tmp_path / "in", out, ocr="never")]
    assert sorted(again) == ["locked", "notes", "truncated"]  # good.pdf is finished
    forced = [r.name for r in docpipe.convert(folder["good"], out, force=True, ocr="never")]
    assert forced == ["good"]
