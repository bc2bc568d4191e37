"""TEDS: tree-edit-distance-based similarity of two tables (1 best, 0 worst).

TEDS(a, b) = 1 - TED(a, b) / max(|a|, |b|), with |t| the number of nodes and
TED the Zhang-Shasha ordered tree edit distance under these costs (those of
the TEDS definition in Zhong et al., "Image-based table recognition", 2020):
insert / delete a node 1; rename 1 when tags differ, 1 when two cells differ
in colspan or rowspan, else the normalized Levenshtein distance of the two
cells' texts; 0 for equal non-cell tags.

Zhang-Shasha runs in O(|a| |b| min(depth, leaves)^2); table trees are three
levels deep, so this is cheap even for tables of a few hundred cells.
"""
from __future__ import annotations

from rapidfuzz.distance import Levenshtein

from docpipe.eval.tables import Node


def _rename_cost(a: Node, b: Node) -> float:
    if a.tag != b.tag:
        return 1.0
    if a.tag != "td":
        return 0.0
    if (a.colspan, a.rowspan) != (b.colspan, b.rowspan):
        return 1.0
    return Levenshtein.normalized_distance(a.text, b.text)


def _postorder(root: Node) -> tuple[list[Node], list[int]]:
    """Nodes in postorder and, per node, the postorder index of its leftmost leaf."""
    nodes: list[Node] = []
    leftmost: list[int] = []

    def visit(node: Node) -> int:
        first = None
        for child in node.children:
            lm = visit(child)
            first = lm if first is None else first
        nodes.append(node)
        leftmost.append(first if first is not None else len(nodes) - 1)
        return leftmost[-1]

    visit(root)
    return nodes, leftmost


def _keyroots(leftmost: list[int]) -> list[int]:
    """Highest node for each distinct leftmost leaf, ascending."""
    last: dict[int, int] = {}
    for i, lm in enumerate(leftmost):
        last[lm] = i
    return sorted(last.values())


def tree_edit_distance(a: Node, b: Node) -> float:
    na, la = _postorder(a)
    nb, lb = _postorder(b)
    td = [[0.0] * len(nb) for _ in na]
    for i in _keyroots(la):
        for j in _keyroots(lb):
            _forest_distance(i, j, na, la, nb, lb, td)
    return td[-1][-1]


def _forest_distance(i, j, na, la, nb, lb, td) -> None:
    """Fill td for the subtrees rooted at keyroots i and j (Zhang-Shasha)."""
    li, lj = la[i], lb[j]
    rows, cols = i - li + 2, j - lj + 2
    fd = [[0.0] * cols for _ in range(rows)]
    for x in range(1, rows):
        fd[x][0] = fd[x - 1][0] + 1
    for y in range(1, cols):
        fd[0][y] = fd[0][y - 1] + 1
    for x in range(1, rows):
        ai = li + x - 1
        for y in range(1, cols):
            bj = lj + y - 1
            if la[ai] == li and lb[bj] == lj:  # both prefixes are whole trees
                fd[x][y] = min(fd[x - 1][y] + 1, fd[x][y - 1] + 1,
                               fd[x - 1][y - 1] + _rename_cost(na[ai], nb[bj]))
                td[ai][bj] = fd[x][y]
            else:
                px, py = la[ai] - li, lb[bj] - lj  # forests before these subtrees
                fd[x][y] = min(fd[x - 1][y] + 1, fd[x][y - 1] + 1, fd[px][py] + td[ai][bj])


def teds(a: Node, b: Node) -> float:
    size = max(a.size(), b.size())
    return 1.0 - tree_edit_distance(a, b) / size if size else 1.0


def match_tables(pred: list[Node], ref: list[Node]) -> list[float]:
    """One score per reference table: its best unused prediction (greedy on
    the highest TEDS), 0 when predictions run out."""
    pairs = sorted(((teds(p, r), pi, ri) for pi, p in enumerate(pred) for ri, r in enumerate(ref)),
                   reverse=True)
    scores = [0.0] * len(ref)
    used_p, used_r = set(), set()
    for score, pi, ri in pairs:
        if pi not in used_p and ri not in used_r:
            used_p.add(pi)
            used_r.add(ri)
            scores[ri] = score
    return scores
