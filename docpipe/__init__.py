"""docpipe: batch PDF to Markdown with a document VLM."""
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
