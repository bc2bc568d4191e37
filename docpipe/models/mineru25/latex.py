"""LaTeX clean-up for recognised formulas and for math inside text.

Equation answers: outer delimiters (`\\[ \\]`, `$$ $$`, `\\( \\)`, `$ $`) are
removed (the Markdown writer adds `$$`), unmatched braces are balanced (a
stray `}` is dropped, a missing `}` appended), then `\\left`/`\\right` are
paired within each brace group: an unmatched `\\left` gets `\\right.` at the
end of its group, an unmatched `\\right` gets `\\left.` at the group's start
(both are invisible delimiters, so the formula compiles and shows what was
recognised). Text answers: `\\(x\\)` becomes `$x$`; `\\[x\\]` inside running
text becomes `$x$` as well, except a bare citation-like `\\[1-3\\]` which
becomes `[1-3]`.
"""
from __future__ import annotations

import re

_DELIMS = (("\\[", "\\]"), ("$$", "$$"), ("\\(", "\\)"), ("$", "$"))
_LR_RE = re.compile(r"\\(left|right)(?![A-Za-z])")
_INLINE_RE = re.compile(r"\\\((.+?)\\\)", re.DOTALL)
_DISPLAY_IN_TEXT_RE = re.compile(r"\\\[(.+?)\\\]", re.DOTALL)
_CITATION_RE = re.compile(r"[\d\s,\-–]+")


def strip_delimiters(latex: str) -> str:
    s = latex.strip()
    for start, end in _DELIMS:
        if s.startswith(start) and s.endswith(end) and len(s) >= len(start) + len(end):
            return s[len(start):len(s) - len(end)].strip()
    return s


def _scan(latex: str):
    """Yield (index, kind) for structural tokens: '{', '}', 'left', 'right'.

    Escaped characters (`\\{`, `\\}`, `\\\\`) and other commands are skipped."""
    i, n = 0, len(latex)
    while i < n:
        ch = latex[i]
        if ch == "\\":
            m = _LR_RE.match(latex, i)
            if m:
                yield i, m.group(1)
                i = m.end()
                continue
            j = i + 1
            while j < n and latex[j].isalpha():
                j += 1
            i = max(j, i + 2)  # a command, or an escaped single character
            continue
        if ch in "{}":
            yield i, ch
        i += 1


def balance_braces(latex: str) -> str:
    drop, depth = set(), 0
    for i, kind in _scan(latex):
        if kind == "{":
            depth += 1
        elif kind == "}":
            if depth == 0:
                drop.add(i)
            else:
                depth -= 1
    out = "".join(ch for i, ch in enumerate(latex) if i not in drop)
    return out + "}" * depth


def balance_left_right(latex: str) -> str:
    """Pair \\left/\\right inside each brace group (braces must already balance)."""
    inserts: list[tuple[int, str]] = []
    groups: list[tuple[int, list[int]]] = [(0, [])]  # (content start, open \left positions)
    for i, kind in _scan(latex):
        if kind == "{":
            groups.append((i + 1, []))
        elif kind == "left":
            groups[-1][1].append(i)
        elif kind == "right":
            if groups[-1][1]:
                groups[-1][1].pop()
            else:
                inserts.append((groups[-1][0], "\\left. "))
        elif kind == "}" and len(groups) > 1:
            _, lefts = groups.pop()
            inserts.extend((i, " \\right.") for _ in lefts)
    inserts.extend((len(latex), " \\right.") for _ in groups[0][1])
    for pos, text in sorted(inserts, key=lambda p: p[0], reverse=True):
        latex = latex[:pos] + text + latex[pos:]
    return latex


def clean_equation(answer: str) -> str:
    """Display-math LaTeX without delimiters, balanced."""
    return balance_left_right(balance_braces(strip_delimiters(answer)))


def _inline(m: re.Match) -> str:
    inner = m.group(1).strip()
    return f"${inner}$" if inner else ""


def _display_in_text(m: re.Match) -> str:
    inner = m.group(1).strip()
    if _CITATION_RE.fullmatch(inner):
        return f"[{inner}]"
    return f"${inner}$" if inner else ""


def inline_math(text: str) -> str:
    """Math delimiters inside recognised text -> Markdown `$...$`."""
    text = _INLINE_RE.sub(_inline, text)
    return _DISPLAY_IN_TEXT_RE.sub(_display_in_text, text)
