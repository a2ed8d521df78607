"""The palette term (pixray's PaletteLoss): pulls every pixel towards its nearest palette colour; `hard` also snaps
the image the run scores and shows to the palette, with a straight-through gradient, so every pixel of final.png is
a palette colour."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..files.images import open_rgb
from .base import Term
from .colors import rgb


def nearest(image: Tensor, palette: Tensor) -> tuple[Tensor, Tensor]:
    """Per pixel of images [B,3,H,W], the index [B,H,W] of the nearest palette colour ([K,3], Euclidean in RGB)
    and its distance [B,H,W]."""
    pixels = image.float().movedim(1, -1)  # [B,H,W,3]
    dists = (pixels[..., None, :] - palette.to(pixels)).norm(dim=-1)  # [B,H,W,K]
    d, index = dists.min(-1)
    return index, d


def palette_loss(image: Tensor, palette: Tensor) -> Tensor:
    """Mean distance of the pixels of images [B,3,H,W] to their nearest colour of `palette` [K,3] (0-d)."""
    return nearest(image, palette)[1].mean()


def snap(image: Tensor, palette: Tensor) -> Tensor:
    """Images [B,3,H,W] with every pixel replaced by its nearest palette colour (exactly), the gradient passed
    straight through to the image."""
    index, _ = nearest(image, palette)
    snapped = palette.to(image.dtype)[index].movedim(-1, 1)
    return snapped + (image - image.detach())


def image_palette(pixels: Tensor, k: int, iters: int = 10) -> Tensor:
    """`k` colours [k,3] of pixels [N,3] in [0,1] by k-means, started from the most frequent colours at 4 bits a
    channel (deterministic); fewer when the pixels have fewer distinct colours."""
    bins = (pixels * 15).round().long()
    keys, counts = torch.unique(bins[:, 0] * 256 + bins[:, 1] * 16 + bins[:, 2], return_counts=True)
    top = keys[counts.argsort(descending=True, stable=True)[:k]]
    centres = torch.stack([top // 256, top // 16 % 16, top % 16], 1).float() / 15
    for _ in range(iters):
        owner = torch.cdist(pixels, centres).argmin(1)
        for i in range(len(centres)):
            mine = pixels[owner == i]
            if len(mine):
                centres[i] = mine.mean(0)
    return centres


def job_palette(cfg) -> Tensor:
    """The palette [K,3] in [0,1] of a job: `palette.colors`, then `palette.size` colours of `palette.image`."""
    rows = [[c / 255 for c in rgb(name)] for name in cfg.palette.colors]
    out = torch.tensor(rows, dtype=torch.float32).reshape(-1, 3)
    if cfg.palette.image:
        pixels = torch.from_numpy(np.asarray(open_rgb(cfg.palette.image), dtype=np.float32).reshape(-1, 3)) / 255
        out = torch.cat([out, image_palette(pixels, cfg.palette.size)])
    return out


class PaletteTerm(Term):
    """`palette.weight` x the mean distance of each pixel to its nearest palette colour; with `palette.hard` the
    image is snapped to the palette instead (its distance is then 0, so no term is added)."""

    name = "palette"

    def __init__(self, cfg, models, device, amp=None):
        super().__init__(cfg, models, device, amp)
        self.weight, self.hard = cfg.palette.weight, cfg.palette.hard
        self.palette = job_palette(cfg).to(device)

    @classmethod
    def wanted(cls, cfg, models) -> bool:
        p = cfg.palette
        return bool(p.colors or p.image) and (p.hard or p.weight > 0)

    def __call__(self, image, z, z_init, step):
        return None if self.hard else self.weight * palette_loss(image, self.palette)

    def shown(self, image):
        return snap(image, self.palette) if self.hard else image
