"""The pixel drawer: a low-resolution RGB grid [B,3,H/p,W/p] of values in [0,1], shown with nearest upsampling, so
every p x p block of the image is one colour (pixray's pixel drawer, pytti's PixelImage without a palette).

The values themselves are the parameters, kept in [0,1] by the projection after each step (not logits): a start from
an image is its block means, exactly, with no saturated logit to climb out of, and the learning rate is in colour
units."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Drawer


def pixel_image(grid: Tensor, pixel_size: int) -> Tensor:
    """Grid [B,3,h,w] -> image [B,3,h*p,w*p]: each cell a p x p block (nearest upsampling; gradient: block sums)."""
    return F.interpolate(grid, scale_factor=pixel_size, mode="nearest")


def pixel_grid(image: Tensor, pixel_size: int) -> Tensor:
    """Image [B,3,H,W] (multiples of p) -> grid [B,3,H/p,W/p] of the p x p blocks' means (area downsampling)."""
    return F.avg_pool2d(image, pixel_size)


class PixelDrawer(Drawer):
    """A grid of `drawer.pixel_size`-pixel cells; the job's size is rounded to a multiple of it."""

    name = "pixel"

    @classmethod
    def size_factor(cls, cfg, models) -> int:
        return cfg.drawer.pixel_size

    def setup(self) -> None:
        self.pixel_size = self.cfg.drawer.pixel_size

    def random(self, starts: int, rng: torch.Generator) -> Tensor:
        """Uniform noise in [0,1], one value per cell: [starts,3,H/p,W/p]."""
        h, w = self.height // self.pixel_size, self.width // self.pixel_size
        return torch.rand(starts, 3, h, w, generator=rng).to(self.device)

    def encode(self, image: Tensor) -> Tensor:
        return pixel_grid(image.float(), self.pixel_size)

    def decode(self, params: Tensor) -> Tensor:
        return pixel_image(params, self.pixel_size)

    @torch.no_grad()
    def project(self, params: Tensor) -> None:
        """Keep every value a colour: clamp to [0,1]."""
        params.clamp_(0, 1)

    def speed_options(self) -> dict:
        return {"pixel_size": self.pixel_size}
