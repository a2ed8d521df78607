"""Super-resolution after a run: an upscaler's weights read without running code, its architecture found by spandrel
(ESRGAN, Real-ESRGAN, SwinIR and more, without their repositories), and tiled inference whose seams do not show.

spandrel is an optional extra (`pip install 'vqclip[upscale]'`), imported only here and only when an upscaler loads.
Its own file loader is not used: for `.pt` it tries `torch.jit.load` (TorchScript, which compiles the code in the file)
and for `.pth` a hand-written unpickler; vqclip reads the file with its weights-only loader (`checkpoints`) and hands
spandrel the tensors only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import VqclipError, reason
from .checkpoints import TORCH_SUFFIXES, load_state_dict, torch_load_safe

log = logging.getLogger("vqclip.upscale")

TILE, OVERLAP = 192, 48  # input pixels; each tile keeps only pixels >= OVERLAP/4 = 12 px from a neighbour's edge


def spandrel_module():
    """The spandrel package, or a one-line error saying how to install it."""
    try:
        import spandrel  # here: an optional extra, loaded only when an upscaler is used
    except ImportError:
        raise VqclipError("upscaling needs spandrel, which is not installed; pip install 'vqclip[upscale]'") from None
    return spandrel


@dataclass
class Upscaler:
    """A loaded upscaler: `net` maps [1,3,h,w] in [0,1] to [1,3,h*scale,w*scale]; `name` says what it is."""

    net: object
    scale: int
    name: str
    device: torch.device = torch.device("cpu")  # where `net` runs

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


def _tensors(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The flat state dict in a loaded file: bare, or inside `params_ema` / `params` / `state_dict` (as published)."""
    canonical = spandrel_module().canonicalize_state_dict(obj) if isinstance(obj, dict) else None
    if not isinstance(canonical, dict) or not canonical or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in canonical.items()):
        raise VqclipError(f"{path}: holds no state dict of tensors; is it an upscaler's weights (.pth)?")
    return canonical


def load_upscaler(path: str | Path, device: torch.device | str = "cpu") -> Upscaler:
    """An upscaler from a `.pth`/`.pt`/`.ckpt`/`.bin` or `.safetensors` file, read without running code from it; a
    one-line error for a missing file, an unsafe pickle, or weights spandrel does not recognise as an upscaler."""
    spandrel = spandrel_module()
    path = Path(path)
    if not path.is_file():
        raise VqclipError(f"{path}: no such upscaler weights file; check the path")
    if path.suffix.lower() == ".safetensors":
        state = load_state_dict(path)
    elif path.suffix.lower() in TORCH_SUFFIXES:
        state = torch_load_safe(path)  # weights only: a hostile pickle is refused, never run
    else:
        raise VqclipError(f"{path}: unknown upscaler weights format '{path.suffix}'; use .pth or .safetensors")
    state = _tensors(state, path)
    try:
        described = spandrel.MAIN_REGISTRY.load(state)
    except spandrel.UnsupportedModelError:
        raise VqclipError(f"{path}: not an upscaler spandrel knows (no architecture matches its weights); use an "
                          "ESRGAN / Real-ESRGAN / SwinIR-style .pth") from None
    except Exception as exc:  # noqa: BLE001 - a matching architecture whose tensors do not fit it
        raise VqclipError(f"{path}: weights that do not fit their architecture ({reason(exc)})") from None
    if not isinstance(described, spandrel.ImageModelDescriptor) or described.scale < 2 or (
            described.input_channels, described.output_channels) != (3, 3):
        raise VqclipError(f"{path}: a {described.architecture.name} model that is not an RGB upscaler "
                          f"(scale {described.scale}, {described.input_channels} -> {described.output_channels} "
                          "channels)")
    described.eval().to(torch.device(device))
    return Upscaler(described, described.scale, f"{described.architecture.name} x{described.scale}", described.device)


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one side: every `tile - overlap`, the last flush with the far edge."""
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _ramp(length: int, before: bool, after: bool, fade: int) -> torch.Tensor:
    """1-D weights [length] of one tile side: 0 within fade/2 of an edge another tile overlaps, rising linearly to 1
    over the next fade; 1 at the image's own edges. Two neighbours' ramps sum to 1 across an overlap of 2*fade."""
    centre = torch.arange(length, dtype=torch.float32) + 0.5
    w = torch.ones(length)
    if fade > 0:
        if before:
            w = w.minimum(((centre - fade / 2) / fade).clamp(0, 1))
        if after:
            w = w.minimum(((length - centre - fade / 2) / fade).clamp(0, 1))
    return w


def upscale_tiled(model, image: torch.Tensor, tile: int = TILE, overlap: int = OVERLAP,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """`model` run on `image` [1,3,H,W] in overlapping tiles of `tile`² input pixels, blended: [1,3,sH,sW] on CPU.

    Each tile keeps only its pixels at least overlap/4 from an edge that another tile covers, fading in linearly over
    the next overlap/2, and the weights are normalised, so a network whose receptive field reaches at most overlap/4
    pixels gives the untiled result exactly, and a wider one differs only where border padding reached. Memory:
    one tile's activations on the model's device plus the output and weight sum on the CPU. tile <= 0 or an image
    that fits in one tile: one pass. Tiles run on `device` (default: the image's).
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"expected an image [1,C,H,W], got {tuple(image.shape)}")
    _, _, h, w = image.shape
    device = torch.device(device) if device is not None else image.device
    if tile <= 0 or (h <= tile and w <= tile):
        with torch.inference_mode():
            return model(image.to(device)).float().cpu()
    overlap = max(0, min(overlap, tile // 2))
    out = weight = None
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    with torch.inference_mode():
        for y in ys:
            for x in xs:
                patch = image[:, :, y:y + tile, x:x + tile]
                result = model(patch.to(device)).float().cpu()
                s = result.shape[-1] // patch.shape[-1]
                if out is None:
                    out = torch.zeros(1, result.shape[1], h * s, w * s)
                    weight = torch.zeros(1, 1, h * s, w * s)
                fade = overlap * s // 2
                wy = _ramp(result.shape[-2], y > 0, y + tile < h, fade)
                wx = _ramp(result.shape[-1], x > 0, x + tile < w, fade)
                mask = wy[:, None] * wx[None, :]
                oy, ox = y * s, x * s
                out[:, :, oy:oy + result.shape[-2], ox:ox + result.shape[-1]] += result * mask
                weight[:, :, oy:oy + result.shape[-2], ox:ox + result.shape[-1]] += mask
        return out.div_(weight)


def resize_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[1,3,h,w] resized to (H, W) with antialiased bicubic (for a scale below the model's own), clamped to [0,1]."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return torch.nn.functional.interpolate(image, size=size, mode="bicubic", antialias=True,
                                           align_corners=False).clamp_(0, 1)


def upscale(upscaler: Upscaler, image: torch.Tensor, scale: int | None = None, tile: int = TILE,
            overlap: int = OVERLAP) -> torch.Tensor:
    """`image` [1,3,H,W] upscaled to [1,3,scale*H,scale*W] (default: the model's own scale). A scale below the
    model's is its output resized down (as Real-ESRGAN's --outscale does); above it is an error, not a resize up."""
    scale = upscaler.scale if scale is None else int(scale)
    if not 1 <= scale <= upscaler.scale:
        raise VqclipError(f"upscale scale {scale}: {upscaler.name} makes {upscaler.scale}x; use a scale from 1 to "
                          f"{upscaler.scale}, or a model that makes {scale}x")
    out = upscale_tiled(upscaler, image.float().cpu(), tile, overlap, upscaler.device)
    h, w = image.shape[-2:]
    return resize_to(out, (h * scale, w * scale))
