"""Raster images placed on a page -> `image` Blocks with PNG bytes of the crop.

Contract: `find_image_boxes(page)` lists the boxes (displayed page space) worth keeping (tiny
decorations, bullets and rules drawn as images are dropped; overlapping
pieces of one picture are merged); `image_block(CropRenderer(page, dpi), bbox)`
renders the crop (what the reader sees, vector overlays included) as PNG. Rendering
is done per page while streaming, so a document's images are never all held.
"""
from __future__ import annotations

import pymupdf

from docpipe.schema import Block
from docpipe.text.lines import TextLine

_MIN_SIDE_SHARE = 0.04  # an image narrower/shorter than this share of the page is decoration
_MAX_CROP_PX = 1600  # long side cap of a rendered crop (memory and PNG time)
_LABEL_MAX_CHARS = 30  # longer lines are prose, which a figure box must not swallow
_JOIN_GAP_SHARE = 0.02  # image boxes closer than this share of the page width are one figure


def find_image_boxes(page: "pymupdf.Page", lines: list[TextLine] = ()) -> list[tuple[float, float, float, float]]:
    """Image boxes; pieces are merged unless the merged box would cover
    running text from `lines` (figure labels are short, prose is not)."""
    if not page.get_images():
        return []  # no image resources: skip the (costly) placement scan
    page_rect = page.rect
    rot = page.rotation_matrix  # image boxes come unrotated; crops and layout use the displayed page
    gap = _JOIN_GAP_SHARE * page_rect.width
    boxes: list[pymupdf.Rect] = []
    for info in page.get_image_info():
        r = (pymupdf.Rect(info["bbox"]) * rot) & page_rect
        if r.is_empty or r.width < _MIN_SIDE_SHARE * page_rect.width or r.height < _MIN_SIDE_SHARE * page_rect.height:
            continue
        boxes.append(r)
    prose = [pymupdf.Rect(ln.bbox) for ln in lines if len(ln.text) > _LABEL_MAX_CHARS]
    return [tuple(b) for b in _merge_near(boxes, gap, prose)]


def _merge_near(boxes: list["pymupdf.Rect"], gap: float, prose: list["pymupdf.Rect"]) -> list["pymupdf.Rect"]:
    """Pieces of one figure (tiles, masks, sub-pictures side by side) -> one box."""
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            grown = boxes[i] + (-gap, -gap, gap, gap)
            for j in range(i + 1, len(boxes)):
                union = boxes[i] | boxes[j]
                if grown.intersects(boxes[j]) and not any(union.intersects(r) for r in prose):
                    boxes[i] = union
                    boxes.pop(j)
                    merged = True
                    break
            if merged:
                break
    return boxes


class CropRenderer:
    """Renders crops of one page from a display list built once for the page
    (re-interpreting the page per crop costs more than the crops)."""

    def __init__(self, page: "pymupdf.Page", dpi: int):
        self.page = page
        self.dpi = dpi
        self._dlist = None

    def png(self, bbox) -> bytes:
        if self._dlist is None:
            self._dlist = self.page.get_displaylist()
        rect = pymupdf.Rect(bbox)
        zoom = min(self.dpi / 72.0, _MAX_CROP_PX / max(1.0, rect.width, rect.height))
        pix = self._dlist.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), clip=rect, alpha=False)
        return pix.tobytes("png")


def image_block(renderer: CropRenderer, bbox) -> Block:
    return Block(type="image", bbox=tuple(bbox), image=renderer.png(bbox))
