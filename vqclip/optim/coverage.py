"""How much of each cutout lies inside each region prompt's region, computed from the cutout's own resampling: the
region's mask goes through the same boxes (`make_cutouts`) and the same geometric augments (Kornia, replaying the
draw's parameters, bilinear as the image) as the pixels do, and its mean over the cutout's S x S grid is the coverage.

A region prompt's loss weights each cutout's distance by its coverage, normalised per start to mean 1 over the step's
cutouts (`cover_weights`): the prompt's pull is then the coverage-weighted mean distance, so its weight keeps the
meaning it has without a region (a small region does not make a weak prompt), and "a red square:1@left" beside
"a green circle:1@right" pull alike, each only where it applies. The weights are fixed before CLIP scores anything,
so scoring in chunks or across devices sums to the one-pass loss exactly.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .cutouts import CutoutDraw, make_cutouts
from .prompts import Prompt
from .regions import region_mask


def region_masks(prompts: list[Prompt], width: int, height: int,
                 device: torch.device | str = "cpu") -> tuple[Optional[Tensor], list[int]]:
    """The distinct regions of `prompts` as masks [R,H,W] (float32 in [0,1]) and, per prompt, the index of its mask
    (-1: no region, it pulls everywhere); (None, [-1, ...]) when no prompt has a region."""
    names: dict[str, int] = {}
    index = [-1 if p.region is None else names.setdefault(p.region, len(names)) for p in prompts]
    if not names:
        return None, index
    masks = [torch.from_numpy(region_mask(name, width, height)).float() for name in names]
    return torch.stack(masks).to(device), index


@torch.no_grad()
def coverage(masks: Tensor, draw: CutoutDraw, cut_size: int, augment=None) -> Tensor:
    """The share of each cutout inside each region: masks [R,H,W] seen through the draw's boxes [N,4] (N = B*n, the
    same masks under every start) and geometric augments, averaged over the S x S grid -> [N,R] in [0,1]."""
    seen = make_cutouts(masks[None], draw.boxes, cut_size)  # one image of masks: every start's boxes index it
    if draw.augment is not None and augment is not None:  # the geometry of the image's augments, intensity left out
        seen = augment(seen, params=draw.augment, data_keys=["mask"])
    return seen.mean((2, 3))


def cover_weights(cover: Tensor, index: list[int], starts: int) -> Tensor:
    """Per-cutout weights [N,M] of the prompts: 1 for a prompt without a region, else its coverage [N,R] column
    divided by that column's mean over the start's own cutouts (the N rows are `starts` blocks in turn); a start none
    of whose cutouts touches the region gives that prompt weight 0 there."""
    n = len(cover)
    out = cover.new_ones(n, len(index))
    for m, r in enumerate(index):
        if r < 0:
            continue
        column = cover[:, r].view(starts, n // starts)
        mean = column.mean(1, keepdim=True).clamp(min=torch.finfo(cover.dtype).tiny)  # all 0 stays 0: no 0 / 0
        out[:, m] = (column / mean).reshape(n)
    return out
