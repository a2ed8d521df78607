"""A mini-world variant with a colour more (`world.with_color`), for fine-tuning: scenes drawn and rendered in it,
the shipped world unchanged."""
import numpy as np
import pytest

from vqclip.errors import VqclipError
from vqclip.mini import world


def test_a_variant_palette_draws_and_renders_the_new_colour_and_leaves_the_world_as_shipped():
    shipped = dict(world.COLORS)
    palette = world.with_color("pink", (250, 130, 200))
    assert list(palette) == [*shipped, "pink"] and world.COLORS == shipped
    rng = np.random.default_rng(0)
    scenes = [world.sample_scene(rng, colors=palette) for _ in range(300)]
    assert {sc.shapes[0].color for sc in scenes} == {sc.background for sc in scenes} == set(palette)
    assert all(sc.shapes[0].color != sc.background for sc in scenes)
    sc = next(s for s in scenes if s.shapes[0].color == "pink")
    img = world.render(sc, colors=palette)
    s = sc.shapes[0]
    assert tuple(img[int(s.cy), int(s.cx)]) == (250, 130, 200)
    assert tuple(img[0, 0]) == palette[sc.background]
    with pytest.raises(KeyError):
        world.render(sc)  # the shipped world has no pink
    assert [world.sample_scene(np.random.default_rng(1)) for _ in range(1)] == \
           [world.sample_scene(np.random.default_rng(1), colors=world.COLORS)]


def test_a_new_colour_must_be_new_and_a_word():
    for bad in ("red", "Pink", "light pink", ""):
        with pytest.raises(VqclipError, match="give a new lowercase word"):
            world.with_color(bad, (1, 2, 3))
