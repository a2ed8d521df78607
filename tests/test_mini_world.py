"""The mini world: deterministic scenes, captions from the documented grammar, and the caption parser."""
import numpy as np
import pytest

from vqclip.errors import VqclipError
from vqclip.mini import judge, world


def test_dataset_is_deterministic_given_seed():
    a, ca, _ = world.make_dataset(12, seed=3, negatives=0.3)
    b, cb, _ = world.make_dataset(12, seed=3, negatives=0.3)
    c, cc, _ = world.make_dataset(12, seed=4, negatives=0.3)
    assert a.shape == (12, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and ca == cb
    assert not np.array_equal(a, c)


def test_captions_parse_back_to_what_the_scene_shows():
    imgs, caps, scenes = world.make_dataset(300, seed=0, negatives=0.3)
    kinds = {world.attributes(s).count for s in scenes}
    assert {0, 1} <= kinds and kinds & {2, 3, 4}  # proper scenes, fragments and copies all occur
    for img, cap, sc in zip(imgs, caps, scenes):
        got, truth = world.parse_caption(cap), world.attributes(sc)
        assert (got.color, got.shape, got.count) == (truth.color, truth.shape, truth.count)
        assert got.background in (None, truth.background)
        assert truth.color != truth.background
        # the background colour shows at the corners, the shape colour at the first shape's centre
        s = sc.shapes[0]
        assert tuple(img[int(s.cy), int(s.cx)]) == world.COLORS[s.color]


def test_proper_scenes_have_one_whole_shape_inside_the_canvas():
    rng = np.random.default_rng(1)
    sizes = set()
    for _ in range(200):
        sc = world.sample_scene(rng)
        (s,) = sc.shapes
        assert s.r <= s.cx <= 64 - s.r and s.r <= s.cy <= 64 - s.r
        assert world.shape_mask(s).sum() > 100
        sizes.add(round(s.r))
    assert len(sizes) > 8  # varied sizes


@pytest.mark.parametrize("text,expect", [
    ("a red circle on a blue background", ("red", "circle", "blue", 1)),
    ("A blue triangle", ("blue", "triangle", None, 1)),
    ("a yellow square on black", ("yellow", "square", "black", 1)),
    ("an orange circle on a white background", ("orange", "circle", "white", 1)),
    ("  a purple   square on a green background. ", ("purple", "square", "green", 1)),
    ("three white triangles on a black background", ("white", "triangle", "black", 3)),
    ("red fragments on a blue background", ("red", None, "blue", 0)),
    ("a green blob on a white background", ("green", "blob", "white", 1)),
])
def test_parse_caption(text, expect):
    a = world.parse_caption(text)
    assert (a.color, a.shape, a.background, a.count) == expect


@pytest.mark.parametrize("text", ["a pink circle", "a red hexagon on blue", "a red circle on a red background",
                                  "red circle", ""])
def test_parse_caption_rejects_text_outside_the_grammar(text):
    with pytest.raises(VqclipError, match="caption"):
        world.parse_caption(text)


def test_all_prompts_cover_every_combination_once():
    prompts = world.all_prompts()
    assert len(prompts) == len(set(prompts)) == 8 * 7 * 3
    assert "a red circle on a blue background" in prompts and "an orange square on a black background" in prompts
    assert all(world.parse_caption(p).count == 1 for p in prompts)


def test_training_negatives_caption_what_they_show():
    """Clutter and irregular blobs get their own captions, and a blob is one connected region."""
    from vqclip.mini import judge

    rng = np.random.default_rng(11)
    for _ in range(40):
        blob, messy = world.sample_blob(rng), world.sample_clutter(rng)
        a = world.parse_caption(world.caption(blob, rng))
        assert (a.shape, a.count, a.clutter) == ("blob", 1, False) and a == world.attributes(blob)
        mask = (world.render(blob) == world.COLORS[a.color]).all(-1)
        assert len(judge.label_components(mask)[1]) == 1
        m = world.parse_caption(world.caption(messy, rng))
        assert m.clutter and m == world.attributes(messy) and m.shape in world.SHAPES
        img = world.render(messy)
        s = messy.shapes[0]
        assert tuple(img[int(s.cy), int(s.cx)]) == world.COLORS[s.color]  # the stray blobs never cover the shape


def test_scene_for_shows_a_caption_anywhere_on_the_canvas():
    rng = np.random.default_rng(3)
    places = set()
    for text in world.all_prompts()[::5]:
        scene = world.scene_for(world.parse_caption(text), rng)
        places.add((round(scene.shapes[0].cx), round(scene.shapes[0].cy)))
        assert judge.judge(world.render(scene), text).all, text
    assert len(places) > 20  # sized and placed at random, not one fixed layout
    for text in ("a red circle", "two red circles on a blue background", "red fragments on blue"):
        with pytest.raises(VqclipError, match="no proper scene"):
            world.scene_for(world.parse_caption(text), rng)
