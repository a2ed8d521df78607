"""`benchmarks/edits.py`: its scenes are held out and proper, an inpaint asks for a colour that is neither the
object's nor the background's, and its judge counts colour classes as written out here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "edits.py"
_spec = importlib.util.spec_from_file_location("edits_bench", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_the_scenes_are_one_shape_well_inside_and_every_kind_appears():
    from vqclip.mini import world

    scenes = [bench.scene(i) for i in range(6)]
    assert {s.shapes[0].kind for s in scenes} == set(world.SHAPES)
    for s in scenes:
        shape = s.shapes[0]
        assert s.background != shape.color and 12 <= shape.r <= 18
        assert shape.r + 4 <= shape.cx <= world.SIZE - shape.r - 4 and shape.r + 4 <= shape.cy <= world.SIZE - shape.r - 4


def test_the_share_counts_the_nearest_named_colour():
    from vqclip.mini import world

    image = np.zeros((2, 3, 3), np.uint8)
    image[:] = world.COLORS["blue"]
    image[0, :2] = (250, 220, 50)  # nearest: yellow
    where = np.ones((2, 3), bool)
    assert bench.share(image, where, "yellow") == 2 / 6 and bench.share(image, where, "blue") == 4 / 6
    where[1] = False
    assert bench.share(image, where, "yellow") == 2 / 3


def test_the_band_is_the_mask_widened_by_its_feather():
    mask = np.zeros((7, 7), np.uint8)
    mask[3, 3] = 255
    assert bench.band(mask, 2).sum() == 25 and bench.band(mask, 2)[1:6, 1:6].all()
