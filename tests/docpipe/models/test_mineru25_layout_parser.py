from docpipe.geometry import inside_share as inside_fraction
from docpipe.models.mineru25.layout_parser import convert_box, parse_layout


def _box(coords: str, kind: str, tail: str = "<|rotate_up|>") -> str:
    return f"<|box_start|>{coords}<|box_end|><|ref_start|>{kind}<|ref_end|>{tail}"


def test_reading_order_coordinates_and_angles():
    answer = "\n".join([
        _box("100 50 900 80", "title"),
        _box("100 100 500 400", "text", "<|rotate_right|>"),
        _box("600 100 900 400", "image", "<|rotate_down|>"),
        _box("950 100 990 600", "aside_text", "<|rotate_left|>"),
    ])
    blocks = parse_layout(answer)
    assert [b.type for b in blocks] == ["title", "text", "image", "aside_text"]
    assert blocks[0].bbox == (0.1, 0.05, 0.9, 0.08)
    assert [b.angle for b in blocks] == [0, 90, 180, 270]


def test_invalid_boxes_are_dropped_and_reversed_corners_swapped():
    answer = "".join([
        _box("100 100 1001 200", "text"),   # out of range
        _box("100 100 100 200", "text"),    # zero width
        _box("300 300 400 300", "text"),    # zero height
        _box("500 600 200 100", "table"),   # reversed corners
    ])
    blocks = parse_layout(answer)
    assert len(blocks) == 1 and blocks[0].type == "table"
    assert blocks[0].bbox == (0.2, 0.1, 0.5, 0.6)
    assert convert_box((-1, 0, 10, 10)) is None


def test_unknown_type_missing_rotation_and_case():
    blocks = parse_layout(_box("10 10 20 20", "Sticker", "") + _box("30 30 40 40", "TITLE", ""))
    assert [(b.type, b.angle) for b in blocks] == [("unknown", 0), ("title", 0)]


def test_text_and_equation_inside_table_are_dropped():
    answer = "".join([
        _box("100 100 500 500", "table"),
        _box("120 120 300 200", "text"),       # fully inside: dropped
        _box("120 300 300 380", "equation"),   # fully inside: dropped
        _box("120 210 300 290", "image"),      # inside but not text/equation: kept
        _box("400 450 700 520", "text"),       # mostly outside: kept
        _box("100 90 500 140", "table_caption"),
    ])
    types = [b.type for b in parse_layout(answer)]
    assert types == ["table", "image", "text", "table_caption"]


def test_inside_fraction_threshold_is_ninety_percent():
    table = (0.0, 0.0, 1.0, 1.0)
    assert inside_fraction((0.0, 0.0, 0.5, 0.5), table) == 1.0
    assert abs(inside_fraction((0.9, 0.0, 1.1, 1.0), table) - 0.5) < 1e-9
    edge = parse_layout(_box("0 0 1000 1000", "table") + _box("900 0 1000 1000", "text")
                        + _box("890 0 1000 1000", "text"))  # inside at 100% and 100%: both dropped
    assert [b.type for b in edge] == ["table"]
    kept = parse_layout(_box("0 0 500 1000", "table") + _box("460 0 560 1000", "text"))  # 40% inside
    assert [b.type for b in kept] == ["table", "text"]


def test_garbage_between_blocks_is_ignored():
    answer = "noise " + _box("10 10 20 20", "text") + " junk <|box_start|>1 2 3<|box_end|>"
    assert [b.type for b in parse_layout(answer)] == ["text"]


def test_repeated_boxes_of_a_looping_answer_are_kept_once():
    line = _box("10 10 200 40", "text") + "\n"
    blocks = parse_layout(_box("10 0 200 8", "title") + line * 30 + _box("10 50 200 90", "table"))
    assert [b.type for b in blocks] == ["title", "text", "table"]
