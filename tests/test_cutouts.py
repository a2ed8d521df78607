"""Batched cutouts: boxes in bounds, sizes follow cut_pow, gradients reach the image, augments by name."""

import pytest
import torch

from vqclip.cutouts import Cutouts, build_augments, make_cutouts, sample_boxes
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
