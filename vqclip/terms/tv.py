"""The TV term: a smoothness prior on the image (see `vqclip.optim.losses.tv_loss`)."""

from __future__ import annotations

from ..optim.losses import tv_loss
from .base import Term


class TVTerm(Term):
    """`tv_weight` x the total variation of images [B,3,H,W]."""

    name = "tv"

    def __init__(self, cfg, models, device, amp=None):
        super().__init__(cfg, models, device, amp)
        self.weight = cfg.tv_weight

    @classmethod
    def wanted(cls, cfg, models) -> bool:
        return cfg.tv_weight > 0

    def __call__(self, image, z, z_init, step):
        return self.weight * tv_loss(image)
