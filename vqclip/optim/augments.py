"""The cutout augments a job can name, as Kornia augmentations; `noise` is vqclip's own per-cutout noise (cutouts.py).

Kornia is imported when a pipeline is built, so that the config checks names against this table without torch."""

from __future__ import annotations

from ..errors import VqclipError

#: job name -> (kornia.augmentation class, its arguments); "noise" is applied by the cutouts themselves
KORNIA = {
    "affine": ("RandomAffine", {"degrees": 15, "translate": 0.1, "p": 0.7, "padding_mode": "border"}),
    "perspective": ("RandomPerspective", {"distortion_scale": 0.2, "p": 0.7}),
    "flip": ("RandomHorizontalFlip", {"p": 0.5}),
    "jitter": ("ColorJitter", {"brightness": 0.05, "contrast": 0.05, "saturation": 0.05, "hue": 0.01, "p": 0.7}),
    "sharpness": ("RandomSharpness", {"sharpness": 0.3, "p": 0.4}),
    "erasing": ("RandomErasing", {"scale": (0.1, 0.3), "ratio": (0.3, 3.3), "p": 0.5}),
}
AUGMENTS = (*KORNIA, "noise")


def build_augments(names: list[str]):
    """A Kornia AugmentationSequential of the named augments in order (noise is not among them: see cutouts), or an
    nn.Identity when none is named. Replayed on a region's mask (`data_keys=["mask"]`), it moves the mask with the
    image's geometry and bilinear resampling, and skips the colour augments (vqclip.optim.coverage)."""
    import kornia.augmentation as K  # here: see the module docstring
    from kornia.constants import DataKey, Resample
    from torch import nn

    unknown = [n for n in names if n not in AUGMENTS]
    if unknown:
        raise VqclipError(f"cutouts.augments: unknown augment '{unknown[0]}'; use {', '.join(AUGMENTS)}")
    stages = [getattr(K, KORNIA[n][0])(**KORNIA[n][1]) for n in names if n in KORNIA]
    as_image = {DataKey.MASK: {"resample": Resample.BILINEAR, "align_corners": None}}
    return K.AugmentationSequential(*stages, extra_args=as_image) if stages else nn.Identity()
