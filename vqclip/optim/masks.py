"""The mask math of an edit (inpainting, outpainting), as pure functions: a mask [1,1,H,W] in [0,1] (1 = may change)
loaded and resized to the image, feathered outwards, brought down to the drawer's cells, the canvas of an
outpaint, the start image under the mask, and the composite that keeps the original outside the mask exactly.

`Edit` gathers them for a job: the original on its canvas, the feathered mask and the new area."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..errors import VqclipError
from ..files.images import load_image, open_rgb
from .inits import MASK_INITS, wants_edit

log = logging.getLogger("vqclip")

BLUR_CELLS = 16  # a blurred start is the image brought down to 1/16 of its sides and up again


def mask_tensor(source: Union[str, Path, Image.Image, Tensor, np.ndarray], size: tuple[int, int],
                what: str = "init.mask", notice: bool = True) -> Tensor:
    """A mask as [1,1,H,W] in [0,1] at size = (W, H): a file or PIL image (its luminance: white 1, black 0), or a
    tensor/array [H,W], [1,H,W] or [1,1,H,W] in [0,1]; another size is resized (bilinear) with a notice. An image
    with no white or grey at all is a one-line error (nothing to change)."""
    if isinstance(source, (str, Path)):
        source = open_rgb(source)
    if isinstance(source, Image.Image):
        mask = torch.from_numpy(np.asarray(source.convert("L"), dtype=np.float32) / 255.0)
    else:
        mask = torch.as_tensor(source, dtype=torch.float32).detach().cpu()
    if mask.dim() not in (2, 3, 4) or mask.numel() == 0 or mask.numel() != mask.shape[-1] * mask.shape[-2]:
        raise VqclipError(f"{what}: a mask is one channel [H,W], got shape {list(mask.shape)}; give a grey image")
    mask = mask.reshape(1, 1, *mask.shape[-2:]).clamp(0, 1)
    if not bool((mask > 0).any()):
        raise VqclipError(f"{what}: the mask is all black, so nothing may change; paint white where the image may "
                          "change")
    w, h = size
    if tuple(mask.shape[-2:]) != (h, w):
        if notice:
            log.info("%s: the mask is %dx%d; resized to the image's %dx%d", what, mask.shape[-1], mask.shape[-2], w,
                     h)
        mask = F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    return mask


def feather(mask: Tensor, pixels: int) -> Tensor:
    """Mask [1,1,H,W] widened by a band `pixels` wide around it that falls linearly from its edge: a pixel at
    (chessboard) distance d <= pixels from a value v gets at least v - d / (pixels + 1); beyond the band, exactly 0.
    The mask's own values are kept (never lowered)."""
    out = mask
    step = 1.0 / (pixels + 1)
    for _ in range(pixels):
        grown = F.max_pool2d(out, 3, stride=1, padding=1)
        out = torch.maximum(out, (grown - step).clamp(min=0))
    return out


def to_cells(mask: Tensor, factor: int) -> Tensor:
    """Mask [1,1,H,W] -> [1,1,H/f,W/f] at the drawer's cells (VQGAN tokens, pixel cells): each cell the largest
    value it covers, so every cell that touches the mask may change."""
    return F.max_pool2d(mask, factor) if factor > 1 else mask


def composite(base: Tensor, image: Tensor, mask: Tensor) -> Tensor:
    """base [1,3,H,W] where the mask is 0, exactly; image [B,3,H,W] where it is 1; a blend between. Differentiable in
    the image."""
    return base * (1 - mask) + image * mask


def canvas(original: Tensor, extend: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The original [1,3,h,w] at (left, top) of a canvas of size = (W, H), its edges stretched over the rest; and
    where it sits [1,1,H,W] (1 on the original, 0 on the new area). A canvas the original does not fit is an
    error."""
    left, top = extend[0], extend[1]
    h, w = original.shape[-2:]
    right, bottom = size[0] - left - w, size[1] - top - h
    if right < 0 or bottom < 0:
        raise VqclipError(f"init.extend: the canvas {size[0]}x{size[1]} cuts the {w}x{h} original placed at "
                          f"({left}, {top}); extend by multiples of the image model's factor")
    pad = (left, right, top, bottom)
    held = F.pad(torch.ones(1, 1, h, w), pad)
    return F.pad(original, pad, mode="replicate") if any(pad) else original, held


def start_image(base: Tensor, mask: Tensor, new: Tensor, how: str, generator: torch.Generator) -> Tensor:
    """The start [1,3,H,W] of an edit: base outside the mask; under it (blended by its value) the original
    (`keep`), uniform noise (`noise`) or the blurred image (`blur`); the new area of an outpaint (`new` [1,1,H,W] 1
    there) starts from noise but for `blur`. Noise is drawn from `generator` only where some is used."""
    h, w = base.shape[-2:]
    if how not in MASK_INITS:
        raise VqclipError(f"init.mask_init: unknown value '{how}'; use one of {', '.join(MASK_INITS)}")
    if how == "blur":
        small = F.adaptive_avg_pool2d(base, (max(1, h // BLUR_CELLS), max(1, w // BLUR_CELLS)))
        fill = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    elif how == "noise" or bool((new > 0).any()):
        noise = torch.rand(1, 3, h, w, generator=generator)
        fill = noise if how == "noise" else torch.where(new > 0, noise, base)
    else:
        fill = base
    return composite(base, fill, mask)


@dataclass
class Edit:
    """A job's edit at its canvas size: the original `base` [1,3,H,W] in [0,1] (an outpaint's stretched over the new
    area), the feathered `mask` [1,1,H,W] (1 = may change) and the `new` area [1,1,H,W] of an outpaint (1 there)."""

    base: Tensor
    mask: Tensor
    new: Tensor


def edit_of(init, size: list[int], width: int, height: int, notice: bool = True) -> Optional[Edit]:
    """The edit of a job's init section (`InitConfig`) on a canvas of width x height (the rounded `canvas_size` of
    `size`), or None without one. The original is init.image covering `size` (the canvas, without an extension);
    init.mask is resized to the original (with a notice unless `notice` is False); the new area is all mask, its seam
    feathered into it."""
    if not wants_edit(init):
        return None
    if not init.image:
        raise VqclipError("init.mask and init.extend edit an image: give init.image (--init-image PATH)")
    extended = any(init.extend)
    orig_size = (size[0], size[1]) if extended else (width, height)
    original = load_image(init.image, orig_size)
    base, held = canvas(original, tuple(init.extend) if extended else (0, 0, 0, 0), (width, height))
    user = torch.zeros_like(held)
    if init.mask:
        left, top = (init.extend[0], init.extend[1]) if extended else (0, 0)
        inner = feather(mask_tensor(init.mask, orig_size, notice=notice), init.mask_feather)
        user[..., top:top + orig_size[1], left:left + orig_size[0]] = inner
    new = 1 - held
    seam = 1 - feather(held, init.mask_feather)  # 0 on the original, rising to 1 across the seam into the new area
    return Edit(base, torch.maximum(user, seam), new)
