"""Random cutouts of the image: square boxes resampled to CLIP's input size in one batched op, then augmented on the
batch with Kornia. The random part (boxes, augment parameters, noise) is drawn apart from applying it, as Kornia
draws its parameters, so the same views can be replayed on other images (every best-of-n start is scored on one
draw).

Resampling is separable and linear, so each box is two small matrices: a box larger than the output is area-averaged
exactly as `F.adaptive_avg_pool2d` of its crop (the reference notebook's resize), a smaller one is bilinearly
enlarged exactly as `F.interpolate(mode="bilinear", align_corners=False)` of its crop. Both are tested against those
ops. One batched matmul per axis applies every box at once (no Python loop over cutouts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .augments import build_augments


def sample_boxes(n: int, height: int, width: int, cut_size: int, cut_pow: float = 1.0, min_frac: float = 0.0,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """n random square boxes [n,4] as (x0, y0, x1, y1) pixels; sides in [min, short side], skewed by cut_pow."""
    max_size = min(height, width)
    min_size = min(max_size, max(1, int(min_frac * max_size)) if min_frac > 0 else cut_size)
    r = torch.rand(n, 3, generator=generator, device="cpu")
    sizes = (r[:, 0] ** cut_pow * (max_size - min_size) + min_size).floor().clamp(1, max_size)
    x0 = (r[:, 1] * (width - sizes + 1)).floor()
    y0 = (r[:, 2] * (height - sizes + 1)).floor()
    return torch.stack([x0, y0, x0 + sizes, y0 + sizes], 1).to(device)


def resample_matrix(start: Tensor, side: Tensor, out: int, length: int) -> Tensor:
    """Per box, the [out, length] matrix that resamples the pixels start..start+side-1 of an axis of `length` pixels
    to `out` pixels: adaptive average pooling when side >= out, bilinear (align_corners=False) when side < out.

    start, side: [N] integer-valued tensors -> [N, out, length] float32."""
    start, side = start.long(), side.long()
    i = torch.arange(out, device=start.device)
    pos = torch.arange(length, device=start.device)
    # area: output i averages input pixels [floor(i*s/out), ceil((i+1)*s/out)) of the crop (adaptive_avg_pool's bins)
    lo = torch.div(i[None] * side[:, None], out, rounding_mode="floor")
    hi = -torch.div(-(i[None] + 1) * side[:, None], out, rounding_mode="floor")
    rel = pos[None, None] - start[:, None, None]
    inside = (rel >= lo[..., None]) & (rel < hi[..., None])
    area = inside.float() / (hi - lo)[..., None].float()
    # bilinear: source coordinate (i + 0.5) * s / out - 0.5, clamped at 0, between its two neighbours (as F.interpolate)
    src = ((i[None].double() + 0.5) * side[:, None].double() / out - 0.5).clamp(min=0)
    i0 = src.floor().long()
    frac = (src - i0).float()
    i1 = torch.minimum(i0 + 1, side[:, None] - 1)
    lin = (rel == i0[..., None]) * (1 - frac)[..., None] + (rel == i1[..., None]) * frac[..., None]
    return torch.where((side >= out)[:, None, None], area, lin)


def make_cutouts(image: Tensor, boxes: Tensor, cut_size: int) -> Tensor:
    """Crop square boxes [B*n,4] (x0, y0, x1, y1; the first n from image 0, the next n from image 1, ...) of images
    [B,3,H,W] and resample each to [3,S,S]: area-averaged when shrinking, bilinear when enlarging (see
    `resample_matrix`). Returns [B*n,3,S,S] float32; linear in the image, so gradients flow exactly."""
    b, c, h, w = image.shape
    n = len(boxes) // b
    boxes = boxes.to(image.device)
    side = (boxes[:, 2] - boxes[:, 0]).round()
    with torch.autocast(image.device.type, enabled=False):  # resampling stays in fp32 under any autocast
        ax = resample_matrix(boxes[:, 0].round(), side, cut_size, w).to(image.device)  # [N,S,W]
        ay = resample_matrix(boxes[:, 1].round(), side, cut_size, h).to(image.device)  # [N,S,H]
        cols = image.float().reshape(b, c * h, w) @ ax.view(b, n * cut_size, w).transpose(1, 2)  # [B,C*H,n*S]
        cols = cols.view(b, c, h, n, cut_size).permute(0, 3, 1, 2, 4)  # [B,n,C,H,S]
        out = ay.view(b, n, 1, cut_size, h) @ cols  # [B,n,C,S,S]
    return out.reshape(b * n, c, cut_size, cut_size)


def draw_noise(shape: tuple[int, ...], scale: float, generator: torch.Generator | None = None) -> Optional[Tensor]:
    """Per-cutout Gaussian noise [N,C,S,S] (float32, CPU), each cutout with its own strength in [0, scale]; None for
    scale 0."""
    if scale <= 0:
        return None
    strength = torch.rand(shape[0], 1, 1, 1, generator=generator, device="cpu") * scale
    return strength * torch.randn(shape, generator=generator, device="cpu")


def add_noise(batch: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """`batch` [N,C,S,S] plus per-cutout noise (see `draw_noise`); the noise augment of vqclip's cutouts."""
    noise = draw_noise(tuple(batch.shape), scale, generator)
    return batch if noise is None else batch + noise.to(batch)


@dataclass(frozen=True)
class CutoutDraw:
    """The random part of one batch of cutouts, replayable on other images of the same size: boxes [N,4] (per
    image in turn), Kornia's parameters (None: no augments) and the added noise [N,3,S,S] (None: no noise)."""

    boxes: Tensor
    augment: Optional[list[Any]]
    noise: Optional[Tensor]


class Cutouts(nn.Module):
    """The cutout sampler for one CLIP input size: boxes, one batched resample, augments, noise."""

    def __init__(self, cut_size: int, n: int, cut_pow: float = 1.0, min_frac: float = 0.0,
                 augments: list[str] | None = None, noise: float = 0.1):
        super().__init__()
        self.cut_size, self.n, self.cut_pow, self.min_frac = cut_size, n, cut_pow, min_frac
        names = list(augments or [])
        self.augment = build_augments(names)
        self.noise = noise if "noise" in names else 0.0

    def draw(self, batch: int, height: int, width: int, generator: torch.Generator | None = None) -> CutoutDraw:
        """Draw the views of `batch` images of height x width: `n` each. Boxes and noise come from `generator`,
        Kornia's parameters from torch's global RNG (as Kornia draws them)."""
        boxes = sample_boxes(self.n * batch, height, width, self.cut_size, self.cut_pow, self.min_frac, generator)
        shape = (self.n * batch, 3, self.cut_size, self.cut_size)
        augment = None if isinstance(self.augment, nn.Identity) else self.augment.forward_parameters(torch.Size(shape))
        return CutoutDraw(boxes, augment, draw_noise(shape, self.noise, generator))

    def apply(self, image: Tensor, draw: CutoutDraw) -> Tensor:
        """Images [B,3,H,W] in [0,1] -> cutouts [B*n,3,S,S] (float32), n of each image in turn, as `draw` says."""
        batch = make_cutouts(image, draw.boxes, self.cut_size)
        if draw.augment is not None:
            batch = self.augment(batch, params=draw.augment)
        return batch if draw.noise is None else batch + draw.noise.to(batch)

    def forward(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Images [B,3,H,W] in [0,1] -> cutouts [B*n,3,S,S] (float32) of a fresh draw."""
        b, _, h, w = image.shape
        return self.apply(image, self.draw(b, h, w, generator))
