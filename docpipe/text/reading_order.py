"""Reading order of boxes on a page, columns included. Works on bare boxes so
the text layer, OCR and VLM layouts share it:

    order(bboxes, page_width, page_height) -> list[int]   # indices, reading order

Method: a partial order, then a topological sort (after T. Breuel's rules
for document line ordering):
  (a) A precedes B when they overlap horizontally and A is above B;
  (b) A precedes B when A lies left of B and no third box C lies between
      them vertically while overlapping both horizontally (a full-width
      box between two column pieces separates them instead).
Ties between ready boxes go to the topmost, then leftmost. Rule (b) is cubic,
so pages with more than `_MAX_GRAPH` boxes fall back to recursive XY-cut.
"""
from __future__ import annotations

import heapq

from docpipe.schema import BBox

_MAX_GRAPH = 150  # boxes; above this the cubic rule costs too much time
_OVERLAP_SHARE = 0.1  # horizontal overlap, as a share of the narrower box, that relates two boxes


def order(bboxes: list[BBox], page_width: float, page_height: float) -> list[int]:
    """Indices of `bboxes` in reading order."""
    n = len(bboxes)
    if n <= 1:
        return list(range(n))
    tol = max(page_width, page_height) * 0.004
    if n > _MAX_GRAPH:
        out: list[int] = []
        _cut(list(range(n)), bboxes, out, tol)
        return out
    succ = _edges(bboxes, tol)
    indeg = [0] * n
    for s in succ:
        for j in s:
            indeg[j] += 1
    key = lambda i: (bboxes[i][1], bboxes[i][0], i)  # noqa: E731
    heap = [key(i) for i in range(n) if indeg[i] == 0]
    heapq.heapify(heap)
    out, done = [], [False] * n
    while len(out) < n:
        if not heap:  # a cycle (overlapping boxes): release the topmost remaining box
            heap = [key(min((i for i in range(n) if not done[i]), key=key))]
        i = heapq.heappop(heap)[2]
        if done[i]:
            continue
        done[i] = True
        out.append(i)
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0 and not done[j]:
                heapq.heappush(heap, key(j))
    return out


def _h_overlap(a: BBox, b: BBox) -> bool:
    ov = min(a[2], b[2]) - max(a[0], b[0])
    return ov > _OVERLAP_SHARE * min(a[2] - a[0], b[2] - b[0])


def _edges(b: list[BBox], tol: float) -> list[set[int]]:
    n = len(b)
    # Horizontal-overlap sets, computed once: rule (b) intersects them.
    ov = [{j for j in range(n) if j != i and _h_overlap(b[i], b[j])} for i in range(n)]
    succ: list[set[int]] = [set() for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if j in ov[i]:
                # Above: bottom of i over the middle of j (tolerates slight overlaps).
                if b[i][3] - tol <= (b[j][1] + b[j][3]) / 2 and b[i][1] < b[j][1]:
                    succ[i].add(j)
            elif b[i][2] <= b[j][0] + tol and not _separated(i, j, b, ov):
                succ[i].add(j)
    return succ


def _separated(i: int, j: int, b: list[BBox], ov: list[set[int]]) -> bool:
    """A box between i and j vertically that overlaps both horizontally."""
    lo = min(b[i][3], b[j][3])
    hi = max(b[i][1], b[j][1])
    if lo > hi:
        return False  # i and j share rows: nothing lies between them
    return any(lo <= (b[k][1] + b[k][3]) / 2 <= hi for k in ov[i] & ov[j])


def _cut(idx: list[int], boxes: list[BBox], out: list[int], min_gap: float) -> None:
    """Recursive XY-cut: rows at horizontal gaps, then columns at vertical gaps."""
    if len(idx) <= 1:
        out.extend(idx)
        return
    for axis in (1, 0):
        spans = sorted((boxes[i][axis], boxes[i][axis + 2]) for i in idx)
        cuts, end = [], spans[0][1]
        for lo, hi in spans[1:]:
            if lo - end >= min_gap:
                cuts.append((lo + end) / 2)
            end = max(end, hi)
        if cuts:
            groups: list[list[int]] = [[] for _ in range(len(cuts) + 1)]
            for i in idx:
                mid = (boxes[i][axis] + boxes[i][axis + 2]) / 2
                groups[sum(mid > c for c in cuts)].append(i)
            for g in groups:
                if g:
                    _cut(g, boxes, out, min_gap)
            return
    out.extend(sorted(idx, key=lambda i: (boxes[i][1], boxes[i][0])))
