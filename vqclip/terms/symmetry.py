"""The symmetry term (pixray's SymmetryLoss): the mean difference of the image and its mirror image, per axis."""

from __future__ import annotations

from torch import Tensor

from .base import Term

FLIP_DIM = {"x": -1, "y": -2}  # x: mirrored left-right (the width flips), y: top-bottom


def symmetry_loss(image: Tensor, axes: list[str]) -> Tensor:
    """Sum over `axes` of the mean |image - its mirror image| of images [B,3,H,W] (0-d)."""
    return sum((image - image.flip(FLIP_DIM[a])).abs().mean() for a in axes)


class SymmetryTerm(Term):
    """`symmetry.weight` x `symmetry_loss` along `symmetry.axes`."""

    name = "symmetry"

    def __init__(self, cfg, models, device, amp=None):
        super().__init__(cfg, models, device, amp)
        self.weight, self.axes = cfg.symmetry.weight, list(cfg.symmetry.axes)

    @classmethod
    def wanted(cls, cfg, models) -> bool:
        return bool(cfg.symmetry.axes) and cfg.symmetry.weight > 0

    def __call__(self, image, z, z_init, step):
        return self.weight * symmetry_loss(image, self.axes)
