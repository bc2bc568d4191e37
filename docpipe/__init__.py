"""docpipe: batch PDF to Markdown with a document VLM."""
import os as _os
import sys as _sys

# PyMuPDF >= 2 imports its optional layout analyser (ONNX) and pymupdf4llm
# whenever they are installed: ~2.5 s in every document worker, for analysis
# docpipe does itself. DOCPIPE_PYMUPDF_LAYOUT=1 keeps them (this only matters
# when docpipe is imported before pymupdf).
if "pymupdf" not in _sys.modules and _os.environ.get("DOCPIPE_PYMUPDF_LAYOUT") != "1":
    for _name in ("pymupdf.layout", "pymupdf4llm"):
        _sys.modules.setdefault(_name, None)
from docpipe.schema import Block, DocumentResult, PageResult, Status

__all__ = ["convert", "Block", "DocumentResult", "PageResult", "Status"]


def convert(inputs, out=None, **options):
    """Convert PDFs; yields one DocumentResult per document as each finishes.

    `inputs`: a path, folder, glob, or a list of them. `out`: optional output
    directory (Markdown, content_list, images, Parquet); None keeps results in
    memory only. Options mirror `docpipe convert` (see docpipe.config).
    """
    from docpipe.api import convert as _convert

    return _convert(inputs, out=out, **options)
