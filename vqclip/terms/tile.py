"""Seamless tiles: the VQGAN decodes with circular padding (`vqclip.nets.tiling.circular`), so the image wraps
around, and the CLIP cutouts see the image rolled by a random offset each step, so no seam can hide at the border."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor

from ..nets.tiling import circular
from .base import Term


def random_roll(image: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Images [B,3,H,W] rolled by one random (dy, dx) (the run's random stream; the same for every start)."""
    h, w = image.shape[-2:]
    dy, dx = int(torch.randint(h, (), generator=generator)), int(torch.randint(w, (), generator=generator))
    return image.roll((dy, dx), (-2, -1))


class TileTerm(Term):
    """No loss of its own: a circular decoder, and the cutouts drawn from a randomly rolled image."""

    name = "tile"

    @classmethod
    def wanted(cls, cfg, models) -> bool:
        return bool(cfg.tile)

    def viewed(self, image):
        return random_roll(image)

    def decoding(self, drawer):
        # a pixel grid (no convolution) and a Fourier image (periodic by construction) wrap around already
        return circular(drawer.decoder) if drawer.decoder is not None else nullcontext()
