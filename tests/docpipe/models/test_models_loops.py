from docpipe.models.loops import find_loop, truncate_loop


def test_runaway_tail_is_cut_after_one_unit():
    text = "The results are shown below. " + "and the value is 0.5, " * 40 + "and the va"
    check = truncate_loop(text)
    assert check.is_loop and check.period == len("and the value is 0.5, ")
    assert check.text == "The results are shown below. and the value is 0.5,"
    assert check.repeats > 39


def test_single_character_loop():
    check = truncate_loop("Total: " + "9" * 500)
    assert check.is_loop and check.text == "Total: 9"


def test_long_unit_needs_only_three_repeats():
    sentence = "This sentence is long enough to count as a unit by itself here. "
    assert truncate_loop("Intro. " + sentence * 4).is_loop
    assert not truncate_loop("Intro. " + sentence * 2).is_loop


def test_normal_text_and_short_repeats_are_kept():
    prose = " ".join(f"word{i}" for i in range(400))
    assert not truncate_loop(prose).is_loop
    table_row = "<fcel>x" + "<ecel>" * 12 + "<nl>"  # legit empty cells
    assert not truncate_loop(table_row).is_loop
    assert truncate_loop("").text == ""


def test_token_lists():
    tokens = [1, 2, 3, 4] + [7, 8, 9] * 100
    loop = find_loop(tokens)
    assert loop is not None and loop.period == 3 and loop.start == 4
    assert find_loop(list(range(1000))) is None
