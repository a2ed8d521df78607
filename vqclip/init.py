"""Initial latents: random codebook entries, or an image (noise, gradient, flat colour, a file) through the encoder."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from .errors import VqclipError, missing, reason
from .quantize import codes_to_latent

log = logging.getLogger("vqclip")


def random_codes(codebook: Tensor, h: int, w: int, generator: torch.Generator) -> Tensor:
    """Uniformly random codebook entries: [1,E,h,w]."""
    codes = torch.randint(codebook.shape[0], (1, h, w), generator=generator)
    return codes_to_latent(codes.to(codebook.device), codebook)


def noise_image(height: int, width: int, generator: torch.Generator) -> Tensor:
    """Uniform pixel noise [1,3,H,W] in [0,1]."""
    return torch.rand(1, 3, height, width, generator=generator)


def gradient_image(height: int, width: int, generator: torch.Generator) -> Tensor:
    """A linear blend between two random colours in a random direction: [1,3,H,W] in [0,1]."""
    a, b = torch.rand(2, 3, 1, 1, generator=generator)
    angle = torch.rand((), generator=generator) * 2 * torch.pi
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    t = ((xs * angle.cos() + ys * angle.sin()) / 2 + 0.5).clamp(0, 1)
    return (a * (1 - t) + b * t)[None]


def flat_image(height: int, width: int, color: list[float] | None, generator: torch.Generator) -> Tensor:
    """One colour everywhere (random when not given): [1,3,H,W] in [0,1]."""
    rgb = torch.tensor(color) if color is not None else torch.rand(3, generator=generator)
    return rgb.view(1, 3, 1, 1).expand(1, 3, height, width).clone()


def prompt_background(prompt: str) -> list[float] | None:
    """RGB in [0,1] of the colour a prompt names as its background ("... on a red background", "... on black"),
    by CSS colour name; None when it names none."""
    from PIL import ImageColor

    for name in re.findall(r"\bon (?:an? |the )?([a-z]+)(?: background)?\b", prompt.lower()):
        try:
            return [c / 255 for c in ImageColor.getrgb(name)[:3]]
        except ValueError:
            continue
    return None


def open_rgb(path: str | Path) -> Image.Image:
    """An image file as an RGB PIL image (decoded now, file closed); a one-line error for a missing, unreadable or
    decompression-bomb file."""
    path = Path(path)
    if not path.is_file():
        raise VqclipError(missing(path, "image file"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is a bad file, not a warning
            with Image.open(path) as im:
                return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise VqclipError(f"{path}: not a readable image ({reason(exc)})") from None


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> Tensor:
    """An image file as [1,3,H,W] in [0,1]; with size=(W,H) resized to cover it and centre-cropped."""
    import numpy as np

    im = open_rgb(path)
    if size is not None:
        w, h = size
        scale = max(w / im.width, h / im.height)
        im = im.resize((max(w, round(im.width * scale)), max(h, round(im.height * scale))), Image.LANCZOS)
        left, top = (im.width - w) // 2, (im.height - h) // 2
        im = im.crop((left, top, left + w, top + h))
    array = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def initial_image(kind: str, width: int, height: int, generator: torch.Generator, image: str | None = None,
                  color: list[float] | None = None, prompt: str = "") -> Tensor | None:
    """The start image [1,3,H,W] in [0,1] for an image-based init, or None for random codes."""
    if kind == "random":
        return None
    if kind == "pixels":
        return noise_image(height, width, generator)
    if kind == "gradient":
        return gradient_image(height, width, generator)
    if kind == "flat":
        return flat_image(height, width, color, generator)
    if kind == "background":  # flat, in the background colour the prompt names: one object grows on it
        named = prompt_background(prompt)
        if named is None:
            log.info("init background: the prompt names no background colour; starting from %s",
                     "init.color" if color else "a random flat colour")
        return flat_image(height, width, named or color, generator)
    if kind == "image":
        return load_image(image, (width, height))
    raise VqclipError(f"init.kind: unknown init '{kind}'; use random, pixels, gradient, flat, background or image")
