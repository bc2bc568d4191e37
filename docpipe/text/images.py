"""Raster images placed on a page -> `image` Blocks with PNG bytes of the crop.

Contract: `find_image_boxes(page)` lists the boxes (displayed page space) worth keeping (tiny
decorations, bullets and rules drawn as images are dropped; overlapping
pieces of one picture are merged); `image_block(page, bbox, dpi)` renders
the crop (what the reader sees, vector overlays included) as PNG. Rendering
is done per page while streaming, so a document's images are never all held.
"""
from __future__ import annotations

import pymupdf

from docpipe.schema import Block

_MIN_SIDE_SHARE = 0.04  # an image narrower/shorter than this share of the page is decoration
_MAX_CROP_PX = 2000  # long side cap of a rendered crop (memory and PNG time)


def find_image_boxes(page: "pymupdf.Page") -> list[tuple[float, float, float, float]]:
    page_rect = page.rect
    rot = page.rotation_matrix  # image boxes come unrotated; crops and layout use the displayed page
    boxes: list[pymupdf.Rect] = []
    for info in page.get_image_info():
        r = (pymupdf.Rect(info["bbox"]) * rot) & page_rect
        if r.is_empty or r.width < _MIN_SIDE_SHARE * page_rect.width or r.height < _MIN_SIDE_SHARE * page_rect.height:
            continue
        for i, b in enumerate(boxes):
            inter = b & r
            # Tiled or masked pieces of one picture overlap a lot; neighbours barely.
            if not inter.is_empty and inter.get_area() > 0.5 * min(b.get_area(), r.get_area()):
                boxes[i] = b | r
                break
        else:
            boxes.append(r)
    return [tuple(b) for b in boxes]


def image_block(page: "pymupdf.Page", bbox, dpi: int) -> Block:
    rect = pymupdf.Rect(bbox)
    zoom = dpi / 72.0
    long_side_pt = max(rect.width, rect.height)
    zoom = min(zoom, _MAX_CROP_PX / max(1.0, long_side_pt))
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), clip=rect, alpha=False)
    return Block(type="image", bbox=tuple(rect), image=pix.tobytes("png"))
