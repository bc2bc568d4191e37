"""Text rules for rebuilding paragraphs from lines: hyphenation, CJK line
joins, sentence ends, list markers. Pure string functions, shared by the
text-layer and OCR layouts."""
from __future__ import annotations

import re

# Bullet glyphs, including the private-use code points Symbol/Wingdings bullets map to.
_BULLETS = "•●○◦▪▫■□‣⁃∙·➢➤►▶✓✔❖◆◇–—*-\ufffd☐☑☒❑❒\uf0b7\uf0a7\uf076\uf0d8\uf0fc\uf06e\uf0a8"
_BULLET_RE = re.compile(rf"^\s*[{re.escape(_BULLETS)}]\s*")
# Enumerators: "1." "a)" "(iv)" then a space; "1.Item" (no space, slide exports) too.
_NUMBER_RE = re.compile(r"^\s*(\(?(?:\d{1,3}|[a-z]|[ivx]{1,4})[.)])(?:\s+|(?<=\d[.)])(?=[A-Z]))")
_MARKER_ONLY_RE = re.compile(rf"^\s*(?:[{re.escape(_BULLETS)}]|\(?(?:\d{{1,3}}|[a-zA-Z])[.)])\s*$")
_SENTENCE_END = (".", "!", "?", ":", "。", "！", "？", "：", "\u06d4", "؟")


def is_cjk(ch: str) -> bool:
    """Scripts written without spaces between words (Han, kana); not Hangul."""
    o = ord(ch)
    return (0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF
            or 0x3000 <= o <= 0x303F or 0xFF00 <= o <= 0xFFEF)


def is_rtl(text: str) -> bool:
    """Mostly Hebrew/Arabic letters (right-to-left scripts)."""
    rtl = sum(1 for ch in text if 0x0590 <= ord(ch) <= 0x08FF or 0xFB1D <= ord(ch) <= 0xFEFC)
    ltr = sum(1 for ch in text if ch.isalpha()) - rtl
    return rtl > ltr


def join_lines(lines: list[str]) -> str:
    """Lines of one paragraph -> one string: hyphenated words rejoined,
    CJK lines joined without a space, others with one."""
    out = ""
    for raw in lines:
        s = raw.strip()
        if not s:
            continue
        if not out:
            out = s
        elif out.endswith("\xad"):
            out = out[:-1] + s
        elif len(out) >= 2 and out[-1] == "-" and out[-2].isalpha() and out[-2].islower() and s[0].islower():
            out = out[:-1] + s
        elif is_cjk(out[-1]) and is_cjk(s[0]):
            out += s
        else:
            out += " " + s
    return out.replace("\xad", "")


def ends_sentence(text: str) -> bool:
    return text.rstrip().endswith(_SENTENCE_END)


def starts_item(text: str) -> bool:
    """True when a line opens a list item (bullet or short enumerator)."""
    if _BULLET_RE.match(text):
        # A dash that is a minus sign or a range ("-5", "--") is not a bullet.
        return len(text.strip()) > 1 and not re.match(r"^\s*[-–—]\s*\d", text)
    m = _NUMBER_RE.match(text)
    # "1." followed by a long number-like token is more often a section number.
    return bool(m) and not re.match(r"^\s*\d+\.\d", text)


def is_marker_only(text: str) -> bool:
    return bool(_MARKER_ONLY_RE.match(text))


def list_item(text: str) -> str:
    """Markdown list item text: bullets -> '- ', enumerators kept as '1.'."""
    m = _BULLET_RE.match(text)
    if m:
        return "- " + text[m.end():].strip()
    m = _NUMBER_RE.match(text)
    if m:
        num = m.group(1).strip("().")
        # Markdown only knows numeric enumerators; letters and roman numerals stay in the text.
        if num.isdigit():
            return f"{int(num)}. " + text[m.end():].strip()
        return "- " + text.strip()
    return "- " + text.strip()
