"""The pixel-space judge: right on clean world images, strict about one object, independent of CLIP."""
import numpy as np
import pytest
import torch
from PIL import Image

from vqclip.errors import VqclipError
from vqclip.mini import judge, world


def _scene(color, kind, bg, cx=32.0, cy=32.0, r=16.0):
    return world.Scene(bg, (world.Shape(kind, color, cx, cy, r),))


@pytest.mark.parametrize("kind", world.SHAPES)
def test_every_clean_colour_pair_is_judged_right(kind):
    for color in world.COLORS:
        for bg in world.COLORS:
            if bg == color:
                continue
            v = judge.judge(world.render(_scene(color, kind, bg)), f"a {color} {kind} on a {bg} background")
            assert v.all, (color, kind, bg, v)
            assert (v.found_color, v.found_shape, v.found_background, v.objects) == (color, kind, bg, 1)


def test_random_world_scenes_are_judged_right():
    imgs, caps, _ = world.make_dataset(150, seed=7)
    assert all(judge.judge(im, c).all for im, c in zip(imgs, caps))


def test_two_blobs_of_the_shape_colour_are_not_one_shape():
    two = world.Scene("blue", (world.Shape("circle", "red", 16, 20, 10), world.Shape("circle", "red", 46, 44, 10)))
    v = judge.judge(world.render(two), "a red circle on a blue background")
    assert v.color and v.background and not v.shape
    assert v.objects == 2 and v.largest_share < judge.ONE_OBJECT_SHARE


def test_scattered_fragments_and_copies_are_rejected():
    imgs, _, scenes = world.make_dataset(60, seed=5, negatives=1.0)
    wrong = 0
    for im, sc in zip(imgs, scenes):
        s = sc.shapes[0]
        wrong += not judge.judge(im, f"a {s.color} {s.kind} on a {sc.background} background").shape
    assert wrong >= 55  # only a tiny second copy (<10% of the colour) may pass as one object


def test_wrong_attributes_are_caught():
    img = world.render(_scene("red", "square", "green"))
    assert not judge.judge(img, "a blue square on a green background").color
    assert judge.judge(img, "a red square on a white background").background is False
    assert not judge.judge(img, "a red circle on a green background").shape
    assert not judge.judge(img, "a red triangle").shape
    assert judge.judge(img, "a red square").background is None


def test_a_flat_image_has_no_shape():
    img = np.full((64, 64, 3), world.COLORS["blue"], np.uint8)
    v = judge.judge(img, "a red circle on a blue background")
    assert v.background and not v.color and not v.shape and v.found_color is None


def test_noisy_tensor_and_pil_inputs():
    img = world.render(_scene("yellow", "triangle", "purple", r=18))
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    t = torch.from_numpy(noisy).permute(2, 0, 1).float() / 255
    for x in (t, t[None], Image.fromarray(noisy)):
        assert judge.judge(x, "a yellow triangle on a purple background").all
    with pytest.raises(VqclipError, match="image"):
        judge.judge(torch.zeros(1, 64, 64), "a red circle")


def test_label_components_and_fill_holes():
    m = np.zeros((10, 10), bool)
    m[1:4, 1:4] = True
    m[6:9, 6:9] = True
    m[4, 4] = True  # diagonal touch: 8-connected to the first block
    labels, areas = judge.label_components(m)
    assert sorted(areas.tolist()) == [9, 10]
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False
    assert judge.fill_holes(ring).sum() == 25
