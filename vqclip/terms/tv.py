"""The TV term: a smoothness prior on the image (see `vqclip.optim.losses.tv_loss`); with `tile` it also smooths
across the wrap (last column against the first, last row against the first), which the tile's image continues."""

from __future__ import annotations

from torch import Tensor

from ..optim.losses import tv_loss
from .base import Term


def circular_tv_loss(image: Tensor) -> Tensor:
    """Total variation of images [B,3,H,W] that wrap around: mean squared difference of neighbouring pixels, the
    last column's right neighbour the first column and the last row's lower neighbour the first row."""
    dx = image.roll(-1, -1) - image
    dy = image.roll(-1, -2) - image
    return dx.pow(2).mean() + dy.pow(2).mean()


class TVTerm(Term):
    """`tv_weight` x the total variation of images [B,3,H,W] (around the wrap for a tile, so the pixel pairs across
    it are smoothed as those inside are, and no band along the border is left free)."""

    name = "tv"

    def __init__(self, cfg, models, device, amp=None):
        super().__init__(cfg, models, device, amp)
        self.weight = cfg.tv_weight
        self.circular = bool(cfg.tile)

    @classmethod
    def wanted(cls, cfg, models) -> bool:
        return cfg.tv_weight > 0

    def __call__(self, image, z, z_init, step):
        return self.weight * (circular_tv_loss(image) if self.circular else tv_loss(image))
