"""The init term: keeps the latents near their start (weight x MSE(z, z_start))."""

from __future__ import annotations

import torch.nn.functional as F

from .base import Term


class InitTerm(Term):
    """`init.weight` x the mean squared distance of the latents [B,E,h,w] from their start."""

    name = "init"

    def __init__(self, cfg, models, device, amp=None):
        super().__init__(cfg, models, device, amp)
        self.weight = cfg.init.weight

    @classmethod
    def wanted(cls, cfg, models) -> bool:
        return cfg.init.weight > 0

    def __call__(self, image, z, z_init, step):
        return self.weight * F.mse_loss(z, z_init)
