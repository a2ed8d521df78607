"""Augment names map to the Kornia augmentations they stand for, in the order named, with their documented strengths;
`noise` is the cutouts' own (no Kornia stage); an unknown name is an error naming the choices."""

import kornia.augmentation as K
import pytest
import torch
from torch import nn

from vqclip.errors import VqclipError
from vqclip.optim.augments import AUGMENTS, build_augments

REFERENCE = {  # name -> the Kornia augmentation it stands for
    "affine": lambda: K.RandomAffine(degrees=15, translate=0.1, p=0.7, padding_mode="border"),
    "perspective": lambda: K.RandomPerspective(distortion_scale=0.2, p=0.7),
    "flip": lambda: K.RandomHorizontalFlip(p=0.5),
    "jitter": lambda: K.ColorJitter(brightness=0.05, contrast=0.05, saturation=0.05, hue=0.01, p=0.7),
    "sharpness": lambda: K.RandomSharpness(sharpness=0.3, p=0.4),
    "erasing": lambda: K.RandomErasing(scale=(0.1, 0.3), ratio=(0.3, 3.3), p=0.5),
}


def test_the_names():
    assert AUGMENTS == (*REFERENCE, "noise")


@pytest.mark.parametrize("names", [[n] for n in REFERENCE] + [["flip", "affine", "noise", "jitter"]])
def test_named_augments_are_those_kornia_augmentations_in_order(names):
    """Same global seed, same batch: the output is that of the Kornia stages built by hand, in the order named."""
    batch = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    built = build_augments(names)
    reference = K.AugmentationSequential(*(REFERENCE[n]() for n in names if n != "noise"))
    assert [type(s) for s in built.children()] == [type(s) for s in reference.children()]
    torch.manual_seed(1)
    ours = built(batch)
    torch.manual_seed(1)
    torch.testing.assert_close(ours, reference(batch), rtol=0, atol=0)
    assert not torch.equal(ours, batch)  # 8 images: some were changed


def test_no_kornia_stage_is_the_identity():
    assert isinstance(build_augments([]), nn.Identity) and isinstance(build_augments(["noise"]), nn.Identity)


def test_an_unknown_augment_is_an_error_naming_the_choices():
    with pytest.raises(VqclipError, match="unknown augment 'blur'; use affine, perspective, flip, jitter, sharpness, "
                                          "erasing, noise"):
        build_augments(["flip", "blur"])
