"""Random cutouts of the image, resampled in one batched op, then augmented on the batch with Kornia."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from .errors import VqclipError


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


def make_cutouts(image: Tensor, boxes: Tensor, cut_size: int) -> Tensor:
    """Crop boxes [B*n,4] of images [B,3,H,W] (the first n boxes from image 0, the next n from image 1, ...) and
    resample to [B*n,3,S,S], area-averaging when shrinking."""
    index = torch.arange(len(image), device=image.device).repeat_interleave(len(boxes) // len(image))
    rois = torch.cat([index[:, None].float(), boxes.to(image.device, torch.float32)], 1)
    return roi_align(image.float(), rois, output_size=cut_size, spatial_scale=1.0, sampling_ratio=-1,
                     aligned=True)


def add_noise(batch: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """Per-cutout Gaussian noise: each cutout gets its own strength in [0, scale]."""
    if scale <= 0:
        return batch
    strength = torch.rand(batch.shape[0], 1, 1, 1, generator=generator, device="cpu").to(batch) * scale
    noise = torch.randn(batch.shape, generator=generator, device="cpu").to(batch)
    return batch + strength * noise


def build_augments(names: list[str]) -> nn.Module:
    """A Kornia pipeline from augment names (noise is applied separately, see `add_noise`)."""
    import kornia.augmentation as K

    table = {
        "affine": lambda: K.RandomAffine(degrees=15, translate=0.1, p=0.7, padding_mode="border"),
        "perspective": lambda: K.RandomPerspective(0.2, p=0.7),
        "flip": lambda: K.RandomHorizontalFlip(p=0.5),
        "jitter": lambda: K.ColorJitter(0.05, 0.05, 0.05, 0.01, p=0.7),
        "sharpness": lambda: K.RandomSharpness(0.3, p=0.4),
        "erasing": lambda: K.RandomErasing(scale=(0.1, 0.3), ratio=(0.3, 3.3), p=0.5),
    }
    unknown = [n for n in names if n not in table and n != "noise"]
    if unknown:
        raise VqclipError(f"cutouts.augments: unknown augment '{unknown[0]}'; use {', '.join([*table, 'noise'])}")
    stages = [table[n]() for n in names if n in table]
    return K.AugmentationSequential(*stages) if stages else nn.Identity()


class Cutouts(nn.Module):
    """The cutout sampler for one CLIP input size: boxes, one batched resample, augments, noise."""

    def __init__(self, cut_size: int, n: int, cut_pow: float = 1.0, min_frac: float = 0.0,
                 augments: list[str] | None = None, noise: float = 0.1):
        super().__init__()
        self.cut_size, self.n, self.cut_pow, self.min_frac = cut_size, n, cut_pow, min_frac
        names = list(augments or [])
        self.augment = build_augments(names)
        self.noise = noise if "noise" in names else 0.0

    def forward(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Images [B,3,H,W] in [0,1] -> cutouts [B*n,3,S,S] (float32), n of each image in turn."""
        b, _, h, w = image.shape
        boxes = sample_boxes(self.n * b, h, w, self.cut_size, self.cut_pow, self.min_frac, generator, image.device)
        batch = self.augment(make_cutouts(image, boxes, self.cut_size))
        return add_noise(batch, self.noise, generator)
