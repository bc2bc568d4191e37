"""Tile lists of the graph-shaped attention launches (no Triton needed)."""
import pytest

from inference.ops.tiles import flash_tiles, tile_slots


def test_flash_tiles_lists_every_query_tile_then_pads():
    assert flash_tiles([37, 0, 130], 64, slots=6) == [0, 2 << 16, 2 << 16 | 1, 2 << 16 | 2, -1, -1]
    assert flash_tiles([], 64, slots=2) == [-1, -1]
    with pytest.raises(ValueError, match="do not fit 3 tile slots"):
        flash_tiles([37, 0, 130], 64, slots=3)


@pytest.mark.parametrize("lengths", [[1] * 9, [64, 64, 1], [65, 63, 130, 2], [1000]])
def test_tile_slots_hold_any_split_of_the_rows(lengths):
    slots = tile_slots(sum(lengths), 64, len(lengths))
    assert len(flash_tiles(lengths, 64, slots)) == slots  # fits (raises otherwise)
