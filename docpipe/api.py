"""Python API: `docpipe.convert(inputs, out=None, **options)`.

Yields one DocumentResult per document, in completion order, as each
finishes. Options are ConvertOptions' fields (`pages="1-3"`, `workers=4`,
`backend="pipeline"`, `formats="md,parquet"`, ...) or a ready
`options=ConvertOptions(...)`. With `out`, outputs are written exactly as
`docpipe convert` writes them (resume included: finished documents are
skipped and not yielded unless `force=True`). With `out=None` nothing touches
the disk; results keep their Markdown, content_list and image bytes, and
`to_arrow(results)` turns them into a pyarrow Table with the Parquet dataset's
schema (`.to_pandas()` for pandas; Ray Data: `ray.data.from_arrow`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

from docpipe.config import ConvertOptions
from docpipe.batch import convert_iter
from docpipe.schema import DocumentResult
from docpipe.writers import parquet


def make_options(options: dict) -> ConvertOptions:
    opts = options.pop("options", None)
    if opts is not None:
        if options:
            raise TypeError(f"pass either options= or keyword options, not both: {sorted(options)}")
        if not isinstance(opts, ConvertOptions):
            raise TypeError(f"options must be a ConvertOptions, got {type(opts).__name__}")
        return opts
    return ConvertOptions(**options)


def convert(inputs, out=None, **options) -> Iterator[DocumentResult]:
    """See the module docstring. Options are checked before any work starts."""
    opts = make_options(dict(options))
    return convert_iter(inputs, out, opts)


def to_arrow(results: Iterable[DocumentResult], table_format: str = "auto") -> pa.Table:
    """Results -> pyarrow Table, one row per document (Parquet dataset schema)."""
    return parquet.to_table(list(results), table_format)
