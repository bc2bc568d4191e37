"""One options object for a conversion; the CLI, the Python API and the Ray
job all map onto it."""
from __future__ import annotations

from dataclasses import dataclass, field

BACKENDS = ("auto", "pipeline", "vlm")
FORMATS = ("md", "json", "parquet")
TABLE_FORMATS = ("auto", "markdown", "html")


@dataclass
class ConvertOptions:
    backend: str = "auto"  # auto: VLM when a model is given (hybrid), else pipeline
    pages: str | None = None  # page ranges, 1-based, e.g. "1-3,7"; None = all
    dpi: int = 200  # render resolution for OCR, crops and the VLM
    workers: int = 2  # document worker processes
    force: bool = False  # redo documents whose outputs already exist
    formats: tuple[str, ...] = FORMATS  # which outputs to write
    password: str | None = None  # for encrypted PDFs
    table_format: str = "auto"  # auto: Markdown unless a cell spans, then HTML
    ocr: str = "auto"  # auto (pages without a usable text layer) | always | never
    timeout_s: float = 600.0  # per-document wall-clock limit in a worker
    max_memory_mb: int = 4096  # per-worker address-space limit
    max_page_side_pt: float = 14400.0  # larger pages are rejected as absurd (200 in)
    model: str | None = None  # VLM checkpoint dir, hub id, dummy:<preset> or replay:DIR
    layout: str | None = None  # deployment layout file for the engine
    record: str | None = None  # directory to record VLM answers into
    extra: dict = field(default_factory=dict)  # backend-specific settings

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if isinstance(self.formats, str):
            self.formats = tuple(f.strip() for f in self.formats.split(",") if f.strip())
        bad = set(self.formats) - set(FORMATS)
        if bad:
            raise ValueError(f"unknown formats {sorted(bad)}; choose from {FORMATS}")
        if self.table_format not in TABLE_FORMATS:
            raise ValueError(f"table_format must be one of {TABLE_FORMATS}")
        if self.ocr not in ("auto", "always", "never"):
            raise ValueError("ocr must be auto, always or never")
        if not 36 <= self.dpi <= 600:
            raise ValueError(f"dpi must be within 36..600, got {self.dpi}")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")

    @property
    def effective_backend(self) -> str:
        if self.backend == "auto":
            return "hybrid" if self.model else "pipeline"
        return self.backend
