"""The one error type of ingest: a PDF that cannot be used, with the file and
page it concerns. The pipeline turns it into a failed DocumentResult (or a
failed PageResult when `page` is set and the rest of the document is kept)."""
from __future__ import annotations

import os


class PdfError(Exception):
    """`path`: the file; `page`: 1-based page number as people count pages, or
    None for the whole document; `reason`: what is wrong, in plain words."""

    def __init__(self, path: str | os.PathLike, page: int | None, reason: str):
        self.path, self.page, self.reason = os.fspath(path), page, reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}: page {self.page}" if self.page is not None else self.path
        return f"{where}: {self.reason}"

    def __reduce__(self):  # crosses process boundaries intact (default pickling passes only args)
        return (PdfError, (self.path, self.page, self.reason))
