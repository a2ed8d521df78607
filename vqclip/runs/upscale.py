"""The upscale step: an upscaler named by preset or path made ready before anything long runs, and an image written
upscaled beside its source (`final.png` -> `final_x4.png`), atomically, with the source's metadata."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch

from ..errors import VqclipError
from ..files.images import save_png
from ..models.upscalers import upscaler_file
from ..nets.upscaler import TILE, Upscaler, load_upscaler, upscale

log = logging.getLogger("vqclip.upscale")


def prepare_upscaler(model: str, scale: Optional[int], device: torch.device | str = "cpu",
                     progress: bool = True) -> Upscaler:
    """The upscaler `model` (a preset, fetched once, or a weights file) loaded on `device`; checks up front that it
    can make `scale` (None: its own)."""
    upscaler = load_upscaler(upscaler_file(model, progress=progress), device)
    if scale is not None and not 1 <= scale <= upscaler.scale:
        raise VqclipError(f"upscale scale {scale}: {model} is a {upscaler.scale}x {upscaler.name.split(' x')[0]} "
                          f"model; use a scale from 1 to {upscaler.scale}, or a model that makes {scale}x")
    return upscaler


def upscaled_name(path: Path, scale: int) -> Path:
    """`final.png` -> `final_x4.png`, in the same folder."""
    return Path(path).with_name(f"{Path(path).stem}_x{scale}.png")


def write_upscaled(upscaler: Upscaler, image: torch.Tensor, dest: Path, *, scale: Optional[int] = None,
                   tile: int = TILE, metadata: Optional[dict] = None, source: str = "") -> Path:
    """`image` [1,3,H,W] in [0,1] upscaled and saved as PNG at `dest` (atomically), with `metadata` plus an
    `upscaled` record of what made it."""
    scale = upscaler.scale if scale is None else scale
    out = upscale(upscaler, image, scale, tile)
    info = None
    if metadata is not None:
        info = {**metadata, "upscaled": {"from": source, "model": upscaler.name, "scale": scale, "tile": tile}}
    path = save_png(out, dest, info)
    log.info("upscaled %s -> %s (%dx%d, %s)", source or "image", dest, out.shape[-1], out.shape[-2], upscaler.name)
    return path
