"""The loss terms' math as pure functions: the spherical distance of CLIP embeddings to the prompts, and the
total-variation prior."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .prompts import Prompt


def spherical_distance(x: Tensor, y: Tensor) -> Tensor:
    """Squared great-circle distance between unit vectors: x [N,D], y [M,D] -> [N,M], in [0, pi^2/2]."""
    return (x[:, None, :] - y[None, :, :]).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


def prompt_loss(embeds: Tensor, targets: Tensor, weights: Tensor, stops: Optional[Tensor] = None,
                cover: Optional[Tensor] = None) -> Tensor:
    """Weighted mean distance of cutout embeddings [N,D] to targets [M,D] with weights [M] (negative pushes away).
    `stops` [M] (-inf: none) cut the gradient of each cutout whose signed distance (the weight's sign times the
    distance) is below its prompt's stop; the value is unchanged (the notebook's `replace_grad` with `maximum`).
    `cover` [N,M] weights each cutout's distance per prompt (region prompts: vqclip.optim.coverage; None: all 1)."""
    dists = spherical_distance(embeds, targets)
    if stops is not None:
        dists = torch.where(dists * weights.sign() < stops, dists.detach(), dists)
    if cover is not None:
        dists = dists * cover
    return (dists.mean(0) * weights).sum()


def tv_loss(image: Tensor) -> Tensor:
    """Total variation of an image [B,3,H,W]: mean squared difference of neighbouring pixels (a smoothness prior)."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


def weights_tensor(prompts: list[Prompt], device: torch.device) -> Tensor:
    """The prompts' weights as a float32 tensor [M]."""
    return torch.tensor([p.weight for p in prompts], dtype=torch.float32, device=device)


def stops_tensor(prompts: list[Prompt], device: torch.device) -> Optional[Tensor]:
    """The prompts' stops as a float32 tensor [M] (-inf where a prompt has none), or None when none has one."""
    if all(p.stop is None for p in prompts):
        return None
    return torch.tensor([-math.inf if p.stop is None else p.stop for p in prompts], dtype=torch.float32, device=device)
