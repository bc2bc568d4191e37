"""The workload side of `docpipe bench pipeline` (pipeline.py): `BenchFlow`
(the page flow with forced output lengths and planned blocks, counting the
requests and forced tokens it makes) and `make_jobs` (the PageJobs of a run:
mineru-synthetic pages made ahead on a thread, answering HOLD while the next
is not made, or PDF pages rendered ahead with their text layer's blocks
standing in for the layout answer).
"""
from __future__ import annotations

import json
import random
import threading
from pathlib import Path

from docpipe.bench.noise import key_seed, seeded_noise as _noise
from docpipe.models.base import LayoutBlock, VLMRequest
from docpipe.models.mineru25.prompts import prompt_for
from docpipe.models.mineru25.sampling import sampling_for
from docpipe.models.replay import record_path
from docpipe.models.scheduler import HOLD, PageFlow, PageJob
from docpipe.models.vlm_page import BlockRequest

_TYPE_TO_MIX = {"title": "title", "table": "table", "equation": "equation"}  # anything else: "text"


def _forced_len(rng_key: tuple, mix_kind: str) -> int:
    from docpipe.bench.workload import JITTER, PAGE_MIX
    rng = random.Random(repr(rng_key))
    return max(1, round(PAGE_MIX[mix_kind][3] * rng.uniform(1 - JITTER, 1 + JITTER)))


def scaled(num_tokens: int, scale: float) -> int:
    return max(1, round(num_tokens * scale))


class BenchFlow(PageFlow):
    """The page flow with forced output lengths and planned blocks (see module doc);
    counts the requests and forced output tokens it makes."""

    def __init__(self, family, seed: int, replay_dir: str | None, output_scale: float = 1.0):
        super().__init__(family)
        self.seed, self.replay_dir, self.output_scale = seed, replay_dir, output_scale
        self.num_requests = self.num_output_tokens = 0
        self._count_lock = threading.Lock()  # block requests may be built on a preparation thread

    def _count(self, requests: list[VLMRequest]) -> None:
        for r in requests:  # forced lengths, scaled for quick smoke runs
            r.sampling["max_tokens"] = scaled(r.sampling["max_tokens"], self.output_scale)
        with self._count_lock:
            self.num_requests += len(requests)
            self.num_output_tokens += sum(r.sampling["max_tokens"] for r in requests)

    def layout_request(self, job):
        req = super().layout_request(job)
        forced = job.plan.get("layout_tokens") or _forced_len((self.seed, job.plan["doc"], job.page_idx), "layout")
        req.sampling.update(max_tokens=forced, ignore_eos=True)
        if self.replay_dir:  # a recorded layout answer, when there is one, stands in for the model's
            path = record_path(Path(self.replay_dir), req.key)
            if path.is_file():
                job.plan["blocks"] = self.family.parse_layout(json.loads(path.read_text())["answer"])
        self._count([req])
        return req

    def blocks(self, job, answer):
        return job.plan["blocks"]

    def block_requests(self, job, blocks):
        key = (self.seed, job.plan["doc"], job.plan.get("page", job.page_idx))  # noise seeded by workload page
        if job.plan.get("synthetic"):
            out = []
            for i, r in enumerate(job.plan["synthetic"]):
                kind = "text" if r.kind == "title" else r.kind
                sampling = {**sampling_for(kind, r.width_px, r.height_px), "max_tokens": r.output_tokens,
                            "ignore_eos": True}
                image = _synthetic_crop(job.render, r.width_px, r.height_px, (*key, i))
                out.append(BlockRequest(i, VLMRequest(image, prompt_for(r.kind)[0], sampling, kind)))
        else:
            out = super().block_requests(job, blocks)
            for br in out:
                mix = _TYPE_TO_MIX.get(blocks[br.block_idx].type, "text")
                br.request.sampling.update(max_tokens=_forced_len((*key, br.block_idx), mix), ignore_eos=True)
        self._count([br.request for br in out])
        return out


def _synthetic_crop(render, width_px: int, height_px: int, key: tuple):
    """A block image of the synthetic page: a crop of its render at a position
    seeded by `key`, as the product crops blocks from the page render (a fresh
    noise image per block cost ~1 ms of host time a block that the real path
    does not pay). Parts of a crop beyond the render (jittered sizes can exceed
    it) come out black; the size, which sets the compute, is the planned one."""
    if render is None:
        return _noise(width_px, height_px, key)
    seed = key_seed(key)
    x = seed % max(render.width - width_px + 1, 1)
    y = (seed >> 16) % max(render.height - height_px + 1, 1)
    return render.crop((x, y, x + width_px, y + height_px))


def _synthetic_jobs(num_pages: int, seed: int):
    from docpipe.bench.workload import mineru_synthetic

    for reqs in mineru_synthetic(num_pages, seed):
        page = reqs[0].page
        blocks = [LayoutBlock(r.kind, (0.0, 0.0, 1.0, 1.0)) for r in reqs[1:]]
        plan = {"doc": "synthetic", "blocks": blocks, "synthetic": reqs[1:], "layout_tokens": reqs[0].output_tokens}
        yield PageJob(page, 612.0, 792.0, _noise(1036, 1036, (seed, page)), plan=plan)


def make_jobs(pdfs: list[Path], num_pages: int, seed: int, dpi: int = 200):
    """PageJobs for the whole run (generator: PDFs are rendered ahead by prefetch_pages)."""
    from docpipe.ingest.ahead import ahead

    if num_pages:
        # made ahead on a thread, as `docpipe convert` renders pages ahead (ahead.py)
        # HOLD: the engine steps while the next page is made, as with renders in convert (doc_stream)
        yield from ahead(_synthetic_jobs(num_pages, seed), window=4, name="docpipe-synthetic-pages", hold=HOLD)
        return
    import pymupdf

    from docpipe.ingest.render import prefetch_pages
    from docpipe.text import backend as text_backend
    from docpipe.config import ConvertOptions

    opts = ConvertOptions(ocr="never")
    for pdf in pdfs:
        with pymupdf.open(pdf) as doc:
            indices = list(range(doc.page_count))
            ctx = text_backend.first_pass(doc, indices)

            def text_blocks(page):  # on the render thread: the text layer's blocks stand in for the layout
                res = text_backend.extract_page(page, page.number, ctx, opts)
                w, h = page.rect.width, page.rect.height
                return [LayoutBlock("text" if b.type == "list" else b.type,
                                    (b.bbox[0] / w, b.bbox[1] / h, b.bbox[2] / w, b.bbox[3] / h))
                        for b in res.blocks if b.bbox[2] > b.bbox[0] and b.bbox[3] > b.bbox[1]], (w, h)

            for item in prefetch_pages(doc, indices, dpi=dpi, window=4, also=text_blocks):
                blocks, (w, h) = item.extra if item.extra else ([], (0.0, 0.0))
                yield PageJob(item.page_idx, w, h, item.image, error=str(item.error or ""),
                              timings_s={"render": item.render_s}, plan={"doc": pdf.name, "blocks": blocks})
