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


def pixel_grid(width: int, height: int, device=None, dtype=torch.float32) -> Tensor:
    """The pixel centres [1,H,W,2] (x, y) of an image: pixel (i, j) is the centre of column i, row j."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys], -1)[None]


def to_grid(points: Tensor, width: int, height: int) -> Tensor:
    """Pixel coordinates [B,H,W,2] as `grid_sample`'s normalised ones (align_corners=False)."""
    size = torch.tensor([width, height], dtype=points.dtype, device=points.device)
    return (2 * points + 1) / size - 1


def sample(image: Tensor, points: Tensor, padding: str = "border") -> Tensor:
    """Bilinear samples [B,C,H',W'] of an image [B,C,H,W] at pixel coordinates [B,H',W',2]."""
    grid = to_grid(points, image.shape[-1], image.shape[-2])
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def flow_points(flow: Tensor) -> Tensor:
    """The points p + flow(p) [B,H,W,2] in pixel coordinates of a flow [B,2,H,W]."""
    _, _, h, w = flow.shape
    return pixel_grid(w, h, flow.device, flow.dtype) + flow.permute(0, 2, 3, 1)


def flow_grid(flow: Tensor) -> Tensor:
    """The `grid_sample` grid [B,H,W,2] (normalised, align_corners=False) of the points p + flow(p), flow [B,2,H,W]."""
    return to_grid(flow_points(flow), flow.shape[-1], flow.shape[-2])


def warp(image: Tensor, flow: Tensor, padding: str = "border") -> Tensor:
    """`image` [B,C,H,W] sampled at p + flow(p) (bilinear): out(p) = image(p + flow(p)); flow [B,2,H,W] in pixels.
    Points outside the image read the `padding` (border: the nearest edge pixel; zeros)."""
    return sample(image, flow_points(flow.to(image.dtype)), padding)


def outside(flow: Tensor) -> Tensor:
    """[B,1,H,W]: 1 where p + flow(p) falls outside the image (past the outer pixel centres), else 0."""
    _, _, h, w = flow.shape
    points = flow_points(flow)
    x, y = points[..., 0], points[..., 1]
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
