"""Evaluate a folder of predicted Markdown against reference Markdown.

For every `<stem>.md` in REF_DIR, the prediction is PRED_DIR/<stem>.md or
PRED_DIR/<stem>/<stem>.md (docpipe's output layout); a missing prediction
scores as empty output, as in bench/quality_eval.py. Per file: NED of the
plain text and, when both sides contain tables, mean TEDS over the reference
tables (each matched to its best prediction). Means: NED over all files, TEDS
over files with tables on both sides.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from docpipe.eval.tables import find_tables
from docpipe.eval.teds import match_tables
from docpipe.eval.text import ned


@dataclass
class FileScore:
    name: str  # reference file name
    ned: float  # 0 best, 1 worst
    teds: float | None  # mean over reference tables, None without tables on both sides
    num_ref_tables: int
    num_pred_tables: int
    has_prediction: bool


@dataclass
class EvalReport:
    files: list[FileScore] = field(default_factory=list)

    @property
    def mean_ned(self) -> float:
        return sum(f.ned for f in self.files) / len(self.files) if self.files else 0.0

    @property
    def mean_teds(self) -> float | None:
        vals = [f.teds for f in self.files if f.teds is not None]
        return sum(vals) / len(vals) if vals else None

    def to_dict(self) -> dict:
        return {"files": [asdict(f) for f in self.files], "mean_ned": self.mean_ned,
                "mean_teds": self.mean_teds, "num_files": len(self.files),
                "num_files_with_tables": sum(f.teds is not None for f in self.files)}


def find_prediction(pred_dir: Path, stem: str) -> Path | None:
    for cand in (pred_dir / f"{stem}.md", pred_dir / stem / f"{stem}.md"):
        if cand.is_file():
            return cand
    return None


def score_file(pred_md: str, ref_md: str, name: str, has_prediction: bool = True) -> FileScore:
    pred_tables, ref_tables = find_tables(pred_md), find_tables(ref_md)
    teds = None
    if pred_tables and ref_tables:
        scores = match_tables(pred_tables, ref_tables)
        teds = sum(scores) / len(scores)
    return FileScore(name, ned(pred_md, ref_md), teds, len(ref_tables), len(pred_tables), has_prediction)


def evaluate_dirs(pred_dir: str | Path, ref_dir: str | Path) -> EvalReport:
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    if not ref_dir.is_dir():
        raise FileNotFoundError(f"reference folder not found: {ref_dir}")
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder not found: {pred_dir}")
    report = EvalReport()
    for ref in sorted(ref_dir.glob("*.md")):
        pred = find_prediction(pred_dir, ref.stem)
        pred_md = pred.read_text(encoding="utf-8") if pred else ""
        report.files.append(score_file(pred_md, ref.read_text(encoding="utf-8"), ref.name, pred is not None))
    return report
