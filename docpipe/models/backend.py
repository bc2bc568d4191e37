"""The `vlm` backend (and `auto`/hybrid with a model): pages through a
document VLM, scheduled across pages by `scheduler.PageScheduler`.

    extract_pages(doc, page_indices, opts) -> Iterator[PageResult]

One document at a time (process_document: Ray workers, tests); a batch
(`docpipe convert`, `docpipe.convert`) goes through `doc_stream.py`, which
streams several documents' pages through one scheduler with the same jobs.

Same contract as `docpipe.text.backend.extract_pages`: PageResults stream
in page order, a page that fails is yielded with its `error` ("page N: ...")
and the loop goes on, `timings_s` is filled per page (render, text,
vlm_layout, vlm_blocks, assemble).

The model (`opts.model`):
  - `replay:DIR`: recorded answers (`docpipe.models.replay.ReplayClient`);
  - anything else: the embedded engine, `inference.LLM(model=..., layout=opts.layout)`
    (checkpoint dir, hub id or `dummy:<preset>`), one per process, reused
    across documents;
  - `opts.record DIR` also saves every answer as a replay record.
Hybrid (`opts.effective_backend == "hybrid"`): on pages with a reliable
text layer, plain text blocks take their text from it (`text_fill.py`); the
VLM still does layout, titles, tables, formulas, images and scanned pages.

Threads: one render thread (`prefetch_pages`) does all MuPDF work on the
document (render, text layer, page geometry); this thread only runs the
scheduler. Settings in `opts.extra`: `vlm_family` (default mineru25),
`vlm_window_pages` (pages in flight), `vlm_prefetch_pages` (renders ahead),
`vlm_engine` (keyword arguments for `inference.LLM`: device, dtype, mode, ...).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from docpipe.config import ConvertOptions
from docpipe.models.base import get_family
from docpipe.models.scheduler import DEFAULT_WINDOW_PAGES, PageFlow, PageJob, PageScheduler, WaveRunner
from docpipe.models.text_fill import TextLayer, TextLayerLookup, read_text_layer
from docpipe.models.vlm_page import DEFAULT_FAMILY
from docpipe.schema import PageResult

REPLAY_PREFIX = "replay:"
DEFAULT_PREFETCH_PAGES = 4  # renders waiting ahead of the scheduler (~10 MB each at 200 dpi)

_ENGINES: dict[tuple, object] = {}  # (model, layout, family) -> EngineClient, one engine per process


@dataclass
class PageGeometry:
    """What the render thread learns about a page besides its image."""

    width_pt: float  # as displayed (rotation applied): the render's frame
    height_pt: float
    derotate: object = None  # pymupdf.Matrix display -> unrotated page, None when not rotated
    unrotated_size_pt: tuple[float, float] = (0.0, 0.0)  # mediabox width, height
    text: TextLayer | None = None  # hybrid only


def prefetch_pages_of(opts: ConvertOptions) -> int:
    return int(opts.extra.get("vlm_prefetch_pages", DEFAULT_PREFETCH_PAGES))


def open_runner(opts: ConvertOptions, family_name: str = DEFAULT_FAMILY):
    """The Runner for opts.model (see module doc)."""
    if not opts.model:
        raise ValueError("the VLM backend needs a model (--model DIR | hub id | dummy:<preset> | replay:DIR)")
    if opts.model.startswith(REPLAY_PREFIX):
        from docpipe.models.replay import RecordingClient, ReplayClient

        client = ReplayClient(opts.model[len(REPLAY_PREFIX):])
        return WaveRunner(RecordingClient(client, opts.record) if opts.record else client)
    client = engine_client(opts.model, opts.layout, family_name, **dict(opts.extra.get("vlm_engine", {})))
    if client.is_step_level:
        return client.runner(record_dir=opts.record)
    from docpipe.models.replay import RecordingClient  # disaggregated: batch calls, one wave at a time

    return WaveRunner(RecordingClient(client, opts.record) if opts.record else client)


def engine_client(model: str, layout: str | None, family_name: str = DEFAULT_FAMILY, **engine_kwargs):
    """The process's EngineClient for these settings (loaded once, reused by later documents)."""
    from docpipe.models.engine_client import EngineClient

    key = (model, layout, family_name, tuple(sorted(engine_kwargs.items())))
    if key not in _ENGINES:
        _ENGINES[key] = EngineClient.open(model, layout, get_family(family_name), **engine_kwargs)
    return _ENGINES[key]


def page_geometry(page, hybrid: bool) -> PageGeometry:
    """Runs on the render thread."""
    rect = page.rect
    geo = PageGeometry(rect.width, rect.height)
    if page.rotation:
        geo.derotate = page.derotation_matrix
        geo.unrotated_size_pt = (page.mediabox.width, page.mediabox.height)
    if hybrid:
        geo.text = read_text_layer(page)
    return geo


def _unrotate(geo: PageGeometry):
    import pymupdf

    def finalize(result: PageResult) -> None:
        for block in result.blocks:  # schema: boxes in the unrotated page
            block.bbox = tuple(pymupdf.Rect(block.bbox) * geo.derotate)
        result.width_pt, result.height_pt = geo.unrotated_size_pt
    return finalize


def page_jobs(doc, page_indices: list[int], opts: ConvertOptions, hybrid: bool,
              window: int | None = None) -> Iterator[PageJob]:
    """PageJobs of one document, rendered ahead by `window` pages (default
    `vlm_prefetch_pages`) on a render thread."""
    from docpipe.ingest.render import prefetch_pages

    if window is None:
        window = prefetch_pages_of(opts)
    rendered = prefetch_pages(doc, page_indices, dpi=opts.dpi, window=window,
                              also=lambda page: page_geometry(page, hybrid))
    for item in rendered:
        geo: PageGeometry | None = item.extra
        job = PageJob(item.page_idx, geo.width_pt if geo else 0.0, geo.height_pt if geo else 0.0, item.image,
                      timings_s={"render": item.render_s})
        if item.error is not None or geo is None:
            job.error = item.error.reason if item.error is not None else "page could not be read"
            job.render = None
        else:
            if geo.text is not None:
                job.timings_s["text"] = geo.text.read_s
                job.text_for_bbox = TextLayerLookup(geo.text, geo.width_pt, geo.height_pt)
            if geo.derotate is not None:
                job.finalize = _unrotate(geo)
        yield job


def extract_pages(doc, page_indices: list[int], opts: ConvertOptions) -> Iterator[PageResult]:
    family_name = opts.extra.get("vlm_family", DEFAULT_FAMILY)
    runner = open_runner(opts, family_name)
    hybrid = opts.effective_backend == "hybrid"
    window = int(opts.extra.get("vlm_window_pages", DEFAULT_WINDOW_PAGES))
    scheduler = PageScheduler(runner, PageFlow(get_family(family_name)), window)
    try:
        yield from scheduler.run(page_jobs(doc, page_indices, opts, hybrid))
    finally:  # stopped early or failed: free the engine for the next document
        close = getattr(runner, "close", None)
        if close is not None:
            close()
