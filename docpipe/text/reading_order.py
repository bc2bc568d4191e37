"""Reading order of boxes on a page by recursive XY-cut: split at the widest
horizontal gap (rows) first, then at vertical gaps (columns), recursing; the
order of leaves is top-to-bottom, left-to-right within each cut. Works on
bare boxes so the text layer, OCR and VLM layouts share it."""
from __future__ import annotations

from docpipe.schema import BBox


def order(bboxes: list[BBox], page_width: float, page_height: float) -> list[int]:
    """Indices of `bboxes` in reading order."""
    idx = list(range(len(bboxes)))
    out: list[int] = []
    _cut(idx, bboxes, out, min_gap=max(page_width, page_height) * 0.004)
    return out


def _gaps(spans: list[tuple[float, float, int]], min_gap: float) -> list[float]:
    """Cut positions between runs of overlapping 1-D intervals."""
    spans = sorted(spans)
    cuts, end = [], spans[0][1]
    for lo, hi, _ in spans[1:]:
        if lo - end >= min_gap:
            cuts.append((lo + end) / 2)
        end = max(end, hi)
    return cuts


def _split(idx: list[int], boxes: list[BBox], axis: int, cuts: list[float]) -> list[list[int]]:
    groups: list[list[int]] = [[] for _ in range(len(cuts) + 1)]
    for i in idx:
        mid = (boxes[i][axis] + boxes[i][axis + 2]) / 2
        groups[sum(mid > c for c in cuts)].append(i)
    return [g for g in groups if g]


def _cut(idx: list[int], boxes: list[BBox], out: list[int], min_gap: float) -> None:
    if len(idx) <= 1:
        out.extend(idx)
        return
    for axis in (1, 0):  # y first: rows; then x: columns
        cuts = _gaps([(boxes[i][axis], boxes[i][axis + 2], i) for i in idx], min_gap)
        if cuts:
            for g in _split(idx, boxes, axis, cuts):
                _cut(g, boxes, out, min_gap)
            return
    out.extend(sorted(idx, key=lambda i: (boxes[i][1], boxes[i][0])))
