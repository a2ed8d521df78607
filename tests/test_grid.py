"""Contact sheets (vqclip/files/grid.py): every tile pasted whole at its cell, grey cells for runs not made, and each
label, caption and title inked in its own band (tests/test_batch.py checks the plain row and column layout)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vqclip.files.grid import EMPTY, MAX_ROW_LABEL, contact_sheet, write_sheet


def tile(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def inked(page: np.ndarray, box) -> bool:
    """Any dark (text) pixel in (left, top, right, bottom) of a white margin."""
    left, top, right, bottom = box
    return bool((page[top:bottom, left:right] < 128).any())


def test_tiles_of_different_sizes_sit_top_left_in_equal_cells_and_a_missing_one_is_grey():
    tiles = [[tile(30, 20, 1), tile(20, 10, 2)], [None, tile(30, 20, 3)]]
    sheet, layout = contact_sheet(tiles)
    assert sheet.size == (60, 40) == layout.size and (layout.tile_w, layout.tile_h) == (30, 20)
    page = np.asarray(sheet)
    assert np.array_equal(page[0:20, 0:30], np.asarray(tiles[0][0]))
    assert np.array_equal(page[0:10, 30:50], np.asarray(tiles[0][1]))
    assert (page[10:20, 30:60] == 255).all() and (page[0:10, 50:60] == 255).all()  # the rest of a small tile's cell
    assert (page[20:40, 0:30] == EMPTY).all()
    assert np.array_equal(page[20:40, 30:60], np.asarray(tiles[1][1]))


def test_each_row_label_and_column_label_is_inked_beside_its_own_row_and_column():
    tiles = [[tile(40, 24, r * 3 + c) for c in range(3)] for r in range(3)]
    sheet, layout = contact_sheet(tiles, ["lr=0.1", "", "lr=0.3"], ["seed=1", "", "seed=3"])
    page = np.asarray(sheet)
    rows = [(0, layout.box(r, 0)[1], layout.left, layout.box(r, 0)[3]) for r in range(3)]
    cols = [(layout.box(0, c)[0], 0, layout.box(0, c)[2], layout.top) for c in range(3)]
    assert [inked(page, b) for b in rows] == [True, False, True]
    assert [inked(page, b) for b in cols] == [True, False, True]
    for r in range(3):
        for c in range(3):
            x, y, right, bottom = layout.box(r, c)
            assert np.array_equal(page[y:bottom, x:right], np.asarray(tiles[r][c]))


def test_a_long_row_label_is_cut_to_the_widest_margin():
    sheet, layout = contact_sheet([[tile(16, 16, 0)]], ["prompt=" + "a very long prompt " * 20])
    assert layout.left == MAX_ROW_LABEL and sheet.width == MAX_ROW_LABEL + 16


def test_captions_get_a_band_under_each_tile_and_widen_the_cells():
    tiles = [[tile(16, 16, 0), tile(16, 16, 1)]]
    sheet, layout = contact_sheet(tiles, captions={(0, 1): "score 0.91"}, title="best of 2")
    page = np.asarray(sheet)
    assert layout.caption > 0 and layout.cell_w > 16 and layout.top > 0
    first, second = layout.box(0, 0), layout.box(0, 1)
    assert second[0] == first[0] + layout.cell_w
    assert not inked(page, (first[0], first[3], first[0] + layout.cell_w, first[3] + layout.caption))
    assert inked(page, (second[0], second[3], second[0] + layout.cell_w, second[3] + layout.caption))
    assert inked(page, (0, 0, sheet.width, layout.top))  # the title
    for box, t in zip((first, second), tiles[0]):
        assert np.array_equal(page[box[1]:box[3], box[0]:box[2]], np.asarray(t))


def test_a_sheet_is_written_as_the_png_it_is(tmp_path):
    big, _ = contact_sheet([[tile(8, 8, 0)]], ["a"], ["b"], title="t")
    assert write_sheet(tmp_path / "grid.png", big) == tmp_path / "grid.png"
    with Image.open(tmp_path / "grid.png") as back:
        assert back.format == "PNG" and np.array_equal(np.asarray(back.convert("RGB")), np.asarray(big))
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
