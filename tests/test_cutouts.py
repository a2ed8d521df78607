"""Batched cutouts: boxes in bounds, sizes follow cut_pow, gradients reach the image, augments by name."""

import pytest
import torch
import torch.nn.functional as F

from vqclip.optim.cutouts import Cutouts, make_cutouts, sample_boxes
from vqclip.optim.augments import build_augments
from vqclip.errors import VqclipError


def test_boxes_inside_image_and_square():
    g = torch.Generator().manual_seed(0)
    boxes = sample_boxes(500, 40, 70, cut_size=16, generator=g)
    x0, y0, x1, y1 = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 70).all() and (y1 <= 40).all()
    assert torch.equal(x1 - x0, y1 - y0)
    assert (x1 - x0).min() >= 16 and (x1 - x0).max() <= 40


def test_cut_pow_skews_sizes():
    sizes = {}
    for p in (0.5, 3.0):
        b = sample_boxes(2000, 64, 64, 8, cut_pow=p, generator=torch.Generator().manual_seed(1))
        sizes[p] = (b[:, 2] - b[:, 0]).mean().item()
    assert sizes[3.0] < sizes[0.5] - 10


def test_make_cutouts_matches_crop_for_same_size_boxes():
    image = torch.rand(1, 3, 20, 20)
    boxes = torch.tensor([[2.0, 3.0, 10.0, 11.0], [0.0, 0.0, 20.0, 20.0]])
    cuts = make_cutouts(image, boxes, 8)
    assert cuts.shape == (2, 3, 8, 8)
    assert torch.allclose(cuts[0], image[0, :, 3:11, 2:10], atol=1e-5)
    # a 20px box shrunk to 8px is an area average: its mean equals the image mean
    assert torch.allclose(cuts[1].mean(), image.mean(), atol=0.02)


def test_gradient_reaches_image_and_batch_shape():
    image = torch.rand(1, 3, 48, 48, requires_grad=True)
    out = Cutouts(24, 6, augments=["affine", "perspective", "flip", "jitter", "noise"], noise=0.1)(image)
    assert out.shape == (6, 3, 24, 24)
    out.sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_unknown_augment_is_an_error():
    with pytest.raises(VqclipError, match="unknown augment 'blur'"):
        build_augments(["affine", "blur"])


# ---- against the reference ops ---------------------------------------------------------------------------------

def _crop_reference(image, boxes, size):
    """The notebook's cutouts: each box cropped alone, shrunk by adaptive average pooling (or enlarged bilinearly)."""
    out = []
    n = len(boxes) // len(image)
    for k, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
        crop = image[k // n:k // n + 1, :, y0:y1, x0:x1]
        out.append(F.adaptive_avg_pool2d(crop, size) if x1 - x0 >= size else
                   F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
    return torch.cat(out)


@pytest.mark.parametrize("size, min_frac, kinds", [(16, 0.0, {True}), (24, 0.2, {True, False}), (45, 0.1, {False})])
def test_cutouts_are_adaptive_average_pools_of_their_crops(size, min_frac, kinds):
    g = torch.Generator().manual_seed(size)
    image = torch.rand(2, 3, 40, 57, generator=g)
    boxes = sample_boxes(12, 40, 57, size, min_frac=min_frac, generator=g)
    assert set((boxes[:, 2] - boxes[:, 0] >= size).tolist()) == kinds  # shrunk (area), enlarged (bilinear), or both
    torch.testing.assert_close(make_cutouts(image, boxes, size), _crop_reference(image, boxes, size),
                               rtol=1e-5, atol=1e-5)


def test_cutout_gradient_is_the_reference_gradient():
    g = torch.Generator().manual_seed(3)
    image, weights = torch.rand(1, 3, 30, 30, generator=g), torch.rand(6, 3, 12, 12, generator=g)
    boxes = sample_boxes(6, 30, 30, 12, min_frac=0.2, generator=g)
    grads = []
    for fn in (make_cutouts, _crop_reference):
        x = image.clone().requires_grad_(True)
        (fn(x, boxes, 12) * weights).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_a_draw_replays_the_same_views_on_any_image():
    cut = Cutouts(16, 5, augments=["affine", "perspective", "flip", "noise"], noise=0.2)
    a, b = torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40)
    torch.manual_seed(0)
    draw = cut.draw(1, 40, 40, torch.Generator().manual_seed(1))
    assert torch.equal(cut.apply(a, draw), cut.apply(a, draw))
    torch.manual_seed(0)
    torch.testing.assert_close(cut(a, torch.Generator().manual_seed(1)), cut.apply(a, draw))  # a fresh draw, same RNG
    # a view is Kornia's augment (its drawn parameters) of the resampled crop, plus the drawn noise
    crops = make_cutouts(a, draw.boxes, 16)
    torch.testing.assert_close(cut.apply(a, draw), cut.augment(crops, params=draw.augment) + draw.noise)
    moved = (cut.apply(a, draw) - draw.noise - crops).flatten(1).abs().mean(1)
    assert (moved > 0.01).sum() >= 2  # most of the 5 are moved by the affine or perspective augment
    # the views are a linear function of the image: replaying them on a + b gives the sum (noise counted once)
    torch.testing.assert_close(cut.apply(a + b, draw) + draw.noise, cut.apply(a, draw) + cut.apply(b, draw),
                               rtol=1e-4, atol=1e-4)


# ---- the random draw: boxes, noise, views per image ------------------------------------------------------------

@pytest.mark.parametrize("n, h, w, cut, cut_pow, min_frac", [
    (50, 40, 70, 16, 1.0, 0.0), (50, 40, 70, 16, 2.5, 0.0),  # sizes from cut_size to the short side, skewed
    (50, 40, 70, 16, 1.0, 0.5), (50, 70, 40, 16, 1.0, 0.2),  # from min_frac of the short side (20, 8 px)
    (20, 24, 30, 64, 1.0, 0.0)])  # a CLIP input larger than the image: every box is the short side
def test_boxes_are_drawn_as_the_notebook_draws_them(n, h, w, cut, cut_pow, min_frac):
    """Three uniform numbers per box: size = floor(r0^cut_pow * (short - min) + min), min = cut_size (or min_frac of
    the short side, at least 1 px; at most the short side); corner = floor(r * (positions that keep it inside))."""
    boxes = sample_boxes(n, h, w, cut, cut_pow, min_frac, generator=torch.Generator().manual_seed(4))
    r = torch.rand(n, 3, generator=torch.Generator().manual_seed(4))
    short = min(h, w)
    low = min(short, max(1, int(min_frac * short)) if min_frac > 0 else cut)
    size = (r[:, 0] ** cut_pow * (short - low) + low).floor()
    x0, y0 = (r[:, 1] * (w - size + 1)).floor(), (r[:, 2] * (h - size + 1)).floor()
    assert torch.equal(boxes, torch.stack([x0, y0, x0 + size, y0 + size], 1))
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all() and (size >= low).all()


def test_noise_is_gaussian_per_cutout_with_a_uniform_strength_up_to_the_scale():
    from vqclip.optim.cutouts import add_noise, draw_noise

    shape = (6, 3, 4, 4)
    g = torch.Generator().manual_seed(2)
    strength = torch.rand(6, 1, 1, 1, generator=g) * 0.3
    expected = strength * torch.randn(shape, generator=g)
    assert torch.equal(draw_noise(shape, 0.3, torch.Generator().manual_seed(2)), expected)
    batch = torch.rand(shape)
    assert torch.equal(add_noise(batch, 0.3, torch.Generator().manual_seed(2)), batch + expected)
    assert draw_noise(shape, 0.0) is None and add_noise(batch, 0.0) is batch


def test_noise_is_added_only_when_named_and_each_image_gets_its_own_n_views():
    plain = Cutouts(8, 3, augments=["flip"], noise=0.5).draw(2, 16, 20, torch.Generator().manual_seed(0))
    assert plain.noise is None and plain.augment is not None and plain.boxes.shape == (6, 4)
    cut = Cutouts(8, 3, augments=["noise"], noise=0.5)
    image = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(1))
    draw = cut.draw(2, 16, 20, torch.Generator().manual_seed(0))
    assert draw.augment is None and draw.noise.shape == (6, 3, 8, 8) and draw.noise.abs().sum() > 0
    torch.testing.assert_close(cut.apply(image, draw), _crop_reference(image, draw.boxes, 8) + draw.noise)
    torch.testing.assert_close(cut(image, torch.Generator().manual_seed(0)), cut.apply(image, draw))


def test_cutouts_stay_float32_under_autocast():
    """The resampling matrices are exact in fp32; bf16 autocast around them (the run's precision) changes nothing."""
    image = torch.rand(1, 3, 30, 40, generator=torch.Generator().manual_seed(6))
    boxes = sample_boxes(5, 30, 40, 12, generator=torch.Generator().manual_seed(6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cuts = make_cutouts(image, boxes, 12)
    assert cuts.dtype == torch.float32
    torch.testing.assert_close(cuts, _crop_reference(image, boxes, 12), rtol=1e-5, atol=1e-5)
