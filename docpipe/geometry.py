"""Box arithmetic shared by the text layer, OCR and the VLM layout: boxes
are (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0 (see docpipe.schema.BBox)."""
from __future__ import annotations

from collections.abc import Sequence


def area(box: Sequence[float]) -> float:
    """Area of a box; 0 for an empty or reversed one."""
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def inside_share(inner: Sequence[float], outer: Sequence[float]) -> float:
    """Share of `inner`'s area that lies inside `outer` (0 when they do not
    overlap or `inner` is empty)."""
    w = min(inner[2], outer[2]) - max(inner[0], outer[0])
    h = min(inner[3], outer[3]) - max(inner[1], outer[1])
    a = area(inner)
    return w * h / a if w > 0 and h > 0 and a > 0 else 0.0
