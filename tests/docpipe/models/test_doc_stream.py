"""Several documents through one page scheduler (`docpipe.models.doc_stream`,
via `batch.convert_iter`): the outputs are exactly those of converting
each file alone (`process_document`, the per-document path), a bad file
fails alone, a stopped run resumes, later documents' requests reach the
engine before earlier documents finish, and a runner failure only fails the
pages in flight. Replay model here; the tiny random checkpoint in
test_doc_stream_engine.py."""
from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pymupdf
import pytest

import vlm_sample_page as sample_page
from docpipe import batch, pipeline
from docpipe.config import ConvertOptions
from docpipe.models import doc_stream
from docpipe.schema import Status

ROOT = Path(__file__).resolve().parents[3]
REPLAY = f"replay:{ROOT / 'tests' / 'fixtures' / 'replay' / 'sample_page' / 'answers'}"


def make_inputs(folder: Path, bad: bool = False) -> list[Path]:
    """a: the recorded sample page; b: sample page + an unrecorded page (partial);
    c: the sample page twice; with `bad`, a truncated PDF, a text file named .pdf
    and an encrypted PDF in the middle."""
    folder.mkdir(parents=True, exist_ok=True)
    data = sample_page.build_pdf()
    (folder / "a.pdf").write_bytes(data)
    doc = pymupdf.open(stream=data, filetype="pdf")
    doc.new_page(width=300, height=300).insert_text((50, 50), "unrecorded page")
    doc.save(folder / "b.pdf")
    doc = pymupdf.open(stream=data, filetype="pdf")
    doc.insert_pdf(pymupdf.open(stream=data, filetype="pdf"))
    doc.save(folder / "c.pdf")
    if bad:
        (folder / "b1_truncated.pdf").write_bytes(data[: len(data) // 2])
        (folder / "b2_notes.pdf").write_text("just some notes, not a PDF\n")
        with pymupdf.open(stream=data, filetype="pdf") as d:
            d.save(folder / "b3_locked.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="s", owner_pw="o")
    return sorted(folder.glob("*.pdf"))


def outputs(out: Path) -> dict:
    """Every output file's bytes; Parquet rows without their timings (wall seconds)."""
    found = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = str(path.relative_to(out))
        if path.suffix == ".parquet":
            rows = pq.read_table(path).to_pylist()
            found[rel] = [{k: v for k, v in row.items() if k != "timings_s"} for row in rows]
        else:
            found[rel] = path.read_bytes()
    return found


def convert_alone(sources: list[Path], out: Path, opts: ConvertOptions) -> dict:
    """The per-document path: process_document on each file, written the same way."""
    for source in sources:
        result = pipeline.process_document(str(source), opts)
        result.name = source.stem
        batch.write_outputs(result, out, opts)
    return outputs(out)


class Recording:
    """Wraps a runner: logs (event, document, page, kind). Its first `poll` holds
    back until requests of `gate_docs` documents are pending (at most `gate_s`
    seconds), so the test does not depend on how fast the render thread is."""

    def __init__(self, runner, gate_docs: int = 1, gate_s: float = 2.0, fail_poll: int = -1):
        self.runner, self.gate_docs, self.gate_s, self.fail_poll = runner, gate_docs, gate_s, fail_poll
        self.log, self.pending, self.num_polls = [], {}, 0

    @staticmethod
    def _where(tag):
        job = tag.page.job
        return Path(job.doc.result.source_path).stem, job.page_idx

    def submit(self, tag, request):
        self.log.append(("submit", *self._where(tag), request.kind))
        self.pending[id(tag)] = self._where(tag)[0]
        self.runner.submit(tag, request)

    def has_pending(self):
        return self.runner.has_pending()

    def poll(self):
        deadline_s = time.monotonic() + self.gate_s
        while self.num_polls == 0 and len(set(self.pending.values())) < self.gate_docs:
            if time.monotonic() > deadline_s:
                break
            time.sleep(0.001)
        self.num_polls += 1
        if self.num_polls == self.fail_poll:
            self.pending.clear()
            raise RuntimeError("engine step failed")
        done = self.runner.poll()
        for d in done:
            self.pending.pop(id(d.tag), None)
            self.log.append(("finish", *self._where(d.tag), "error" if d.error else "ok"))
        return done

    def close(self):
        self.runner.close() if hasattr(self.runner, "close") else None


def record_runner(monkeypatch, **kw) -> list:
    made = []
    real = doc_stream.open_runner

    def opener(opts, family_name):
        made.append(Recording(real(opts, family_name), **kw))
        return made[-1]
    monkeypatch.setattr(doc_stream, "open_runner", opener)
    return made


@pytest.mark.parametrize("backend", ["vlm", "auto"])
def test_several_documents_give_the_outputs_of_each_alone(backend, tmp_path, monkeypatch):
    sources = make_inputs(tmp_path / "in")
    opts = ConvertOptions(backend=backend, model=REPLAY)
    pages_seen = []
    plan = batch.plan_batch([tmp_path / "in"], tmp_path / "out", opts)
    results = list(batch.run_batch(plan, opts, on_pages=pages_seen.append))
    assert [Path(r.source_path).name for r in results] == ["a.pdf", "b.pdf", "c.pdf"]  # input order
    assert [r.status for r in results] == [Status.SUCCESS, Status.PARTIAL, Status.SUCCESS]
    assert results[1].error.startswith("b.pdf: page 2: VLM mineru25: ReplayMissError")
    assert sum(pages_seen) == 5 and set(pages_seen) == {1}  # live progress, page by page
    assert {"open_s", "extract_s", "assemble_s", "total_s", "pages.vlm_layout_s"} <= set(results[0].timings_s)
    assert outputs(tmp_path / "out") == convert_alone(sources, tmp_path / "alone", opts)


def test_a_bad_file_in_the_middle_fails_alone(tmp_path):
    sources = make_inputs(tmp_path / "in", bad=True)
    opts = ConvertOptions(backend="vlm", model=REPLAY)
    results = list(batch.convert_iter([tmp_path / "in"], tmp_path / "out", opts))
    by_name = {Path(r.source_path).stem: r for r in results}
    assert [Path(r.source_path).name for r in results] == [s.name for s in sources]
    for name, why in (("b1_truncated", "truncated"), ("b2_notes", "not a PDF"), ("b3_locked", "encrypted")):
        r = by_name[name]
        assert r.status == Status.FAILURE and r.error.startswith(str(tmp_path / "in" / f"{name}.pdf"))
        assert why in r.error and not (tmp_path / "out" / name).exists()
    assert [by_name[n].status for n in "abc"] == [Status.SUCCESS, Status.PARTIAL, Status.SUCCESS]
    assert outputs(tmp_path / "out") == convert_alone(sources, tmp_path / "alone", opts)


def test_a_stopped_run_keeps_what_it_wrote_and_resumes(tmp_path):
    sources = make_inputs(tmp_path / "in")
    opts = ConvertOptions(backend="vlm", model=REPLAY)
    for result in batch.convert_iter([tmp_path / "in"], tmp_path / "out", opts):
        break  # the consumer stops (Ctrl-C, a kill after the first document was written)
    assert Path(result.source_path).name == "a.pdf" and (tmp_path / "out" / "a" / "a.md").is_file()
    plan = batch.plan_batch([tmp_path / "in"], tmp_path / "out", opts)
    assert [Path(s).name for s in plan.skipped] == ["a.pdf"] and len(plan.todo) == 2
    rest = list(batch.run_batch(plan, opts))
    assert [Path(r.source_path).name for r in rest] == ["b.pdf", "c.pdf"]
    assert outputs(tmp_path / "out") == convert_alone(sources, tmp_path / "alone", opts)


def _first(log, event, doc):
    return next(i for i, e in enumerate(log) if e[0] == event and e[1] == doc)


def _last(log, event, doc):
    return max(i for i, e in enumerate(log) if e[0] == event and e[1] == doc)


def test_later_documents_reach_the_engine_before_earlier_ones_finish(tmp_path, monkeypatch):
    make_inputs(tmp_path / "in")
    made = record_runner(monkeypatch, gate_docs=2)
    opts = ConvertOptions(backend="vlm", model=REPLAY)
    results = list(batch.convert_iter([tmp_path / "in"], None, opts))
    log = made[0].log
    assert _first(log, "submit", "b") < _last(log, "finish", "a")
    assert _first(log, "submit", "c") < _last(log, "finish", "b")
    assert [Path(r.source_path).name for r in results] == ["a.pdf", "b.pdf", "c.pdf"]


def test_open_documents_are_bounded(tmp_path, monkeypatch):
    make_inputs(tmp_path / "in")
    made = record_runner(monkeypatch, gate_docs=2, gate_s=0.05)  # would overlap them if it could
    opts = ConvertOptions(backend="vlm", model=REPLAY, extra={"vlm_max_open_docs": 1})
    list(batch.convert_iter([tmp_path / "in"], tmp_path / "out", opts))
    log = made[0].log
    assert _last(log, "finish", "a") < _first(log, "submit", "b")  # one document at a time
    assert _last(log, "finish", "b") < _first(log, "submit", "c")
    assert outputs(tmp_path / "out") == convert_alone(sorted((tmp_path / "in").glob("*.pdf")), tmp_path / "alone",
                                                       ConvertOptions(backend="vlm", model=REPLAY))


def test_a_runner_failure_fails_only_the_pages_in_flight(tmp_path, monkeypatch):
    make_inputs(tmp_path / "in")
    made = record_runner(monkeypatch, fail_poll=1)
    opts = ConvertOptions(backend="vlm", model=REPLAY, extra={"vlm_window_pages": 1})
    results = list(batch.convert_iter([tmp_path / "in"], None, opts))
    assert [r.status for r in results] == [Status.FAILURE, Status.PARTIAL, Status.SUCCESS]
    assert results[0].pages[0].error == "a.pdf: page 1: VLM mineru25: RuntimeError: engine step failed"
    assert made[0].log[0] == ("submit", "a", 0, "layout") and len(made) == 1


def test_a_model_that_cannot_load_fails_every_document(tmp_path):
    make_inputs(tmp_path / "in")
    opts = ConvertOptions(backend="vlm", model=f"replay:{tmp_path / 'no-such-folder'}")
    results = list(batch.convert_iter([tmp_path / "in"], None, opts))
    assert [r.status for r in results] == [Status.FAILURE] * 3
    assert all(r.error.startswith(f"{Path(r.source_path).name}: VLM mineru25: cannot start model") for r in results)
