import hashlib
import shutil

import pytest
from batch_pdfs import in_process, make_bad_folder, make_pdf  # noqa: F401 (fixture)

from docpipe import batch, pipeline
from docpipe.config import ConvertOptions
from docpipe.schema import Block, DocumentResult, PageResult, Status

OPTS = ConvertOptions(workers=1, ocr="never")


def test_converts_and_hashes(tmp_path):
    pdf = make_pdf(tmp_path / "two.pdf", ["Alpha paragraph text.", "Beta paragraph text."])
    r = pipeline.process_document(str(pdf), OPTS)
    assert r.status == Status.SUCCESS, r.error
    assert r.doc_id == hashlib.sha256(pdf.read_bytes()).hexdigest()
    assert r.num_pages == 2 and [p.page_idx for p in r.pages] == [0, 1]
    assert "Alpha paragraph text." in r.markdown and "Beta paragraph text." in r.markdown
    assert {e["page_idx"] for e in r.content_list} == {0, 1}
    assert r.backend == "pipeline" and r.timings_s["total_s"] > 0


def test_page_selection(tmp_path):
    pdf = make_pdf(tmp_path / "three.pdf", ["one one", "two two", "three three"])
    r = pipeline.process_document(str(pdf), ConvertOptions(pages="2-", ocr="never"))
    assert [p.page_idx for p in r.pages] == [1, 2] and r.num_pages == 3
    assert "one one" not in r.markdown and "three three" in r.markdown


@pytest.mark.parametrize("kind, reason", [("truncated", "truncated"), ("notes", "not a PDF"),
                                          ("locked", "password")])
def test_bad_files_fail_with_named_reason(tmp_path, kind, reason):
    path = make_bad_folder(tmp_path)[kind]
    r = pipeline.process_document(str(path), OPTS)
    assert r.status == Status.FAILURE and r.pages == []
    assert path.name in r.error and reason in r.error


def test_password_unlocks(tmp_path):
    path = make_bad_folder(tmp_path)["locked"]
    r = pipeline.process_document(str(path), ConvertOptions(password="secret", ocr="never"))
    assert r.status == Status.SUCCESS and "good document" in r.markdown


def _fake_backend(monkeypatch, pages_then_raise):
    def extract(doc, indices, opts):
        for idx in indices:
            item = pages_then_raise(idx)
            if isinstance(item, Exception):
                raise item
            yield item
    monkeypatch.setattr(pipeline, "load_extractor", lambda opts: extract)


def _ok_page(idx, text):
    return PageResult(idx, 595.0, 842.0, blocks=[Block("text", (72, 72, 300, 90), text=text)])


def test_crash_mid_document_keeps_finished_pages(tmp_path, monkeypatch):
    pdf = make_pdf(tmp_path / "doc.pdf", ["a", "b", "c"])
    _fake_backend(monkeypatch, lambda i: _ok_page(i, f"page {i} text") if i == 0 else RuntimeError("boom"))
    r = pipeline.process_document(str(pdf), OPTS)
    assert r.status == Status.PARTIAL
    assert [p.ok for p in r.pages] == [True, False, False]
    assert r.pages[1].error == "doc.pdf: page 2: RuntimeError: boom"
    assert r.pages[2].error.startswith("doc.pdf: page 3: not converted")
    assert "page 0 text" in r.markdown and "page 2 failed" in r.markdown
    assert "doc.pdf: page 2" in r.error


def test_backend_page_errors_name_file_and_page(tmp_path, monkeypatch):
    pdf = make_pdf(tmp_path / "doc.pdf", ["a", "b"])
    _fake_backend(monkeypatch, lambda i: PageResult(i, 1.0, 1.0, error=f"page {i + 1}: bad glyphs"))
    r = pipeline.process_document(str(pdf), OPTS)
    assert r.status == Status.FAILURE
    assert [p.error for p in r.pages] == ["doc.pdf: page 1: bad glyphs", "doc.pdf: page 2: bad glyphs"]


def test_images_named_by_content(tmp_path, monkeypatch):
    pdf = make_pdf(tmp_path / "doc.pdf", ["a"])
    png = b"\x89PNG pretend"
    page = PageResult(0, 595.0, 842.0, blocks=[Block("image", (0, 0, 10, 10), image=png)])
    _fake_backend(monkeypatch, lambda i: page)
    r = pipeline.process_document(str(pdf), OPTS)
    path = f"images/{hashlib.sha256(png).hexdigest()}.png"
    assert r.pages[0].blocks[0].img_path == path
    assert r.content_list[0]["img_path"] == path and f"![]({path})" in r.markdown


def test_vlm_unavailable_is_a_clear_failure(tmp_path, monkeypatch):
    pdf = make_pdf(tmp_path / "doc.pdf", ["a"])
    monkeypatch.setitem(pipeline.BACKEND_MODULES, "vlm", "docpipe.no_such_vlm_module")
    r = pipeline.process_document(str(pdf), ConvertOptions(backend="vlm", model="m"))
    assert r.status == Status.FAILURE and "VLM backend not available" in r.error


def test_resume_force_and_collisions(tmp_path, in_process):
    make_pdf(tmp_path / "in" / "a" / "report.pdf", ["first report"])
    make_pdf(tmp_path / "in" / "b" / "report.pdf", ["second report"])
    make_bad_folder(tmp_path / "in" / "bad")
    out = tmp_path / "out"
    first = list(batch.convert_iter([tmp_path / "in"], out, OPTS))
    assert len(first) == 6
    names = {r.name for r in first if r.status == Status.SUCCESS}
    assert len(names) == 3 and "report" in names  # good.pdf + two distinct report folders
    texts = {(out / n / f"{n}.md").read_text().strip() for n in names if n.startswith("report")}
    assert texts == {"first report", "second report"}
    # resume: finished documents are skipped, failed ones are tried again
    plan = batch.plan_batch([tmp_path / "in"], out, OPTS)
    assert len(plan.skipped) == 3 and sorted(s.rsplit("/", 1)[1] for s in plan.todo) == [
        "locked.pdf", "notes.pdf", "truncated.pdf"]
    # a killed write: temp leftovers are cleaned and the unfinished document redone
    (out / ".tmp-report-x").mkdir()
    shutil.rmtree(out / "good")
    plan = batch.plan_batch([tmp_path / "in"], out, OPTS)
    assert not (out / ".tmp-report-x").exists() and len(plan.skipped) == 2
    forced = batch.plan_batch([tmp_path / "in"], out, ConvertOptions(force=True))
    assert forced.skipped == [] and len(forced.todo) == 6


def test_more_formats_than_last_time_redoes(tmp_path, in_process):
    make_pdf(tmp_path / "in" / "doc.pdf", ["x"])
    out = tmp_path / "out"
    list(batch.convert_iter([tmp_path / "in"], out, ConvertOptions(formats="md", ocr="never")))
    assert not (out / "dataset").exists()
    again = batch.plan_batch([tmp_path / "in"], out, ConvertOptions(formats="md,parquet"))
    assert len(again.todo) == 1
    same = batch.plan_batch([tmp_path / "in"], out, ConvertOptions(formats="md"))
    assert same.todo == []


def test_input_errors_reported_not_raised(tmp_path, in_process):
    results = list(batch.convert_iter([tmp_path / "missing"], tmp_path / "out", OPTS))
    assert len(results) == 1 and results[0].status == Status.FAILURE
    assert "not found" in results[0].error


def test_assembly_error_keeps_pages(tmp_path, monkeypatch):
    pdf = make_pdf(tmp_path / "doc.pdf", ["a"])
    _fake_backend(monkeypatch, lambda i: _ok_page(i, "kept text"))

    def broken(pages):
        raise KeyError("bbox")

    monkeypatch.setattr(pipeline, "build_content_list", broken)
    r = pipeline.process_document(str(pdf), OPTS)
    assert r.status == Status.PARTIAL and r.pages[0].blocks[0].text == "kept text"
    assert r.error.startswith("doc.pdf: internal error after extraction: KeyError")


def test_write_error_fails_only_its_document(tmp_path):
    # a lone surrogate cannot be encoded as UTF-8: the writer raises UnicodeEncodeError, not OSError
    result = DocumentResult(source_path=str(tmp_path / "doc.pdf"), name="doc", status=Status.SUCCESS,
                            markdown="text \udc80 text")
    batch.write_outputs(result, tmp_path / "out", ConvertOptions(formats="md,parquet"))
    assert result.status == Status.FAILURE
    assert result.error.startswith("doc.pdf: cannot write outputs to ") and "UnicodeEncodeError" in result.error
    assert not (tmp_path / "out" / "doc").exists()
