"""Ingest: from inputs on the command line to rendered pages.

  sources.discover(inputs)          -> [Source(path, error)]   files, folders, globs
  pdf.open_pdf(path, password, ...) -> validated pymupdf.Document, or PdfError
  pages.parse_page_ranges(spec, n)  -> [0-based page indices]
  render.render_page(page, dpi)     -> PIL RGB image, long side <= 3500 px
  render.prefetch_pages(doc, ...)   -> RenderedPage per page, rendered ahead, bounded

Every failure is a PdfError(path, page, reason) (errors.py), so the pipeline
can fail one document, or one page, and go on with the batch. Submodules are
imported directly (this package imports nothing) so that discovering sources
does not load PyMuPDF.
"""
