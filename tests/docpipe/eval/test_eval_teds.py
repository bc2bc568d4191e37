import random
import pytest

from docpipe.eval.tables import Node, find_tables
from docpipe.eval.teds import _rename_cost, match_tables, teds, tree_edit_distance


def _html(rows):
    return "<table>" + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows) + "</table>"


def test_identical_is_one_and_markup_variants_agree():
    html = "<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody></table>"
    pipe = "| a | b |\n| --- | --- |\n| 1 | 2 |\n"
    (t1,), (t2,) = find_tables(html), find_tables(pipe)
    assert teds(t1, t1) == 1.0 and teds(t1, t2) == 1.0


def test_known_values():
    (ref,) = find_tables(_html([["a", "b"], ["1", "2"]]))  # 7 nodes
    (one_cell,) = find_tables(_html([["a", "b"], ["1", "X"]]))
    assert teds(one_cell, ref) == pytest.approx(1 - 1 / 7)
    (missing_row,) = find_tables(_html([["a", "b"]]))  # delete tr + 2 td
    assert teds(missing_row, ref) == pytest.approx(1 - 3 / 7)
    (spanned,) = find_tables('<table><tr><td colspan="2">a</td></tr><tr><td>1</td><td>2</td></tr></table>')
    (split,) = find_tables(_html([["a", ""], ["1", "2"]]))
    assert teds(spanned, split) == pytest.approx(1 - 2 / 7)  # span differs (1) + delete a cell (1)


def _oracle(a: Node, b: Node) -> float:
    """Textbook recursive forest edit distance (exponential; small trees only)."""
    memo: dict = {}

    def d(f: tuple, g: tuple) -> float:
        key = (tuple(map(id, f)), tuple(map(id, g)))
        if key in memo:
            return memo[key]
        if not f and not g:
            return 0.0
        if not f:
            best = d(f, g[:-1] + tuple(g[-1].children)) + 1
        elif not g:
            best = d(f[:-1] + tuple(f[-1].children), g) + 1
        else:
            v, w = f[-1], g[-1]
            best = min(d(f[:-1] + tuple(v.children), g) + 1,
                       d(f, g[:-1] + tuple(w.children)) + 1,
                       d(tuple(v.children), tuple(w.children)) + d(f[:-1], g[:-1]) + _rename_cost(v, w))
        memo[key] = best
        return best

    return d((a,), (b,))


def _random_table(rng: random.Random) -> Node:
    rows = []
    for _ in range(rng.randint(1, 3)):
        cells = [Node("td", text=rng.choice(["a", "ab", "b", "", "abc"]), colspan=rng.choice([1, 1, 2]))
                 for _ in range(rng.randint(1, 3))]
        rows.append(Node("tr", children=cells))
    return Node("table", children=rows)


def test_zhang_shasha_matches_oracle():
    rng = random.Random(7)
    for _ in range(60):
        a, b = _random_table(rng), _random_table(rng)
        assert tree_edit_distance(a, b) == pytest.approx(_oracle(a, b))


def test_matching_scores_missing_tables_zero():
    t1, t2 = find_tables(_html([["a"]]) + "\n\n" + _html([["x", "y"], ["z", "w"]]))
    assert match_tables([t2], [t1, t2]) == [0.0, 1.0]
    assert match_tables([], [t1]) == [0.0]
