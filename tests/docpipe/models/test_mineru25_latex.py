from docpipe.models.mineru25.latex import (balance_braces, balance_left_right, clean_equation,
                                           inline_math, strip_delimiters)


def test_delimiters_are_removed():
    assert strip_delimiters("\\[\nx+1\n\\]") == "x+1"
    assert strip_delimiters("$$a$$") == "a"
    assert strip_delimiters("\\(b\\)") == "b"
    assert strip_delimiters("$c$") == "c"
    assert strip_delimiters("a = b") == "a = b"


def test_braces_are_balanced():
    assert balance_braces("\\frac{a}{b") == "\\frac{a}{b}"
    assert balance_braces("x}^{2}") == "x^{2}"
    assert balance_braces("\\{a\\}") == "\\{a\\}"  # escaped braces are literal
    assert balance_braces("a \\\\ {b") == "a \\\\ {b}"


def test_left_right_pairs():
    assert balance_left_right("\\left( x") == "\\left( x \\right."
    assert balance_left_right("x \\right)") == "\\left. x \\right)"
    assert balance_left_right("\\left(a\\right)") == "\\left(a\\right)"
    # an unmatched \left inside a group is closed inside that group, not at the end
    assert balance_left_right("\\frac{\\left[ a}{b}") == "\\frac{\\left[ a \\right.}{b}"
    assert balance_left_right("\\leftarrow x") == "\\leftarrow x"  # not a \left


def test_clean_equation_does_all():
    assert clean_equation("\\[ \\left\\{ \\frac{a}{b \\]") == "\\left\\{ \\frac{a}{b} \\right."


def test_inline_math_in_text():
    assert inline_math("mass \\( m \\) and \\(c\\)") == "mass $m$ and $c$"
    assert inline_math("see \\[1-3\\] and \\[x^2\\]") == "see [1-3] and $x^2$"
    assert inline_math("no math") == "no math"
