"""Optical flow as pure math: warp an image by a flow field and find where two flows disagree (occlusions).

A flow [B,2,H,W] from frame a to frame b holds, at each pixel p of a, the displacement (dx, dy) in pixels (x right,
y down) to where that point is in b: a(p) ~ b(p + flow(p)). `warp(b, flow_ab)` therefore brings b into a's frame,
and the previous output of a video is brought into the next frame's place by the flow from the next frame to the
previous one (the backward flow).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def flow_grid(flow: Tensor) -> Tensor:
    """The `grid_sample` grid [B,H,W,2] (normalised, align_corners=False) of the points p + flow(p), flow [B,2,H,W]."""
    b, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=flow.dtype),
                            torch.arange(w, device=flow.device, dtype=flow.dtype), indexing="ij")
    x = xs[None] + flow[:, 0]
    y = ys[None] + flow[:, 1]
    return torch.stack(((2 * x + 1) / w - 1, (2 * y + 1) / h - 1), dim=-1)


def warp(image: Tensor, flow: Tensor, padding: str = "border") -> Tensor:
    """`image` [B,C,H,W] sampled at p + flow(p) (bilinear): out(p) = image(p + flow(p)); flow [B,2,H,W] in pixels.
    Points outside the image read the `padding` (border: the nearest edge pixel; zeros)."""
    return F.grid_sample(image, flow_grid(flow.to(image.dtype)), mode="bilinear", padding_mode=padding,
                         align_corners=False)


def outside(flow: Tensor) -> Tensor:
    """[B,1,H,W]: 1 where p + flow(p) falls outside the image (past the outer pixel centres), else 0."""
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=flow.dtype),
                            torch.arange(w, device=flow.device, dtype=flow.dtype), indexing="ij")
    x, y = xs + flow[:, 0], ys + flow[:, 1]
    return ((x < 0) | (x > w - 1) | (y < 0) | (y > h - 1))[:, None].to(flow.dtype)


def occlusion(flow: Tensor, back: Tensor, alpha: float = 0.01, beta: float = 0.5) -> Tensor:
    """[B,1,H,W]: 1 where the flow a->b `flow` and the flow b->a `back` (both [B,2,H,W]) disagree, else 0.

    The forward-backward check of Sundaram, Brox and Keutzer (2010): following `flow` to b and `back` home again
    should return to p; a point is occluded (or the flow is wrong there) when
    |flow(p) + back(p + flow(p))|^2 > alpha (|flow(p)|^2 + |back(p + flow(p))|^2) + beta, and where p + flow(p)
    leaves the image."""
    returned = warp(back, flow, padding="border")
    gap = (flow + returned).pow(2).sum(1, keepdim=True)
    scale = flow.pow(2).sum(1, keepdim=True) + returned.pow(2).sum(1, keepdim=True)
    return ((gap > alpha * scale + beta).to(flow.dtype) + outside(flow)).clamp(max=1)
