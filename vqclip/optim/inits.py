"""How a run starts: the init kinds a job can name, and the start image [1,3,H,W] in [0,1] of each image-based one
(the drawer encodes it); `random` has no image: the drawer's own random start (for VQGAN random codebook entries,
`vqclip.draw.vqgan.random_codes`).

torch is imported inside the functions, so that the config checks kinds against this table without it."""

from __future__ import annotations

import logging
import re
from typing import Optional

from ..errors import VqclipError
from ..files.images import load_image

log = logging.getLogger("vqclip")

#: init kind -> what it starts from
INITS = {
    "random": "uniformly random codebook entries",
    "pixels": "uniform pixel noise",
    "gradient": "a linear blend between two random colours",
    "flat": "one colour (init.color, else random)",
    "background": "flat, in the colour the prompt names after 'on' ('... on a red background')",
    "image": "init.image, resized to cover the size",
}

#: what the area under an edit's mask starts from (vqclip.optim.masks.start_image)
MASK_INITS = ("keep", "noise", "blur")


def wants_edit(init) -> bool:
    """Whether a job's init section asks for an edit: a mask, or a canvas extended on some side."""
    return bool(init.mask) or any(init.extend)


def canvas_size(size: list[int], extend: list[int]) -> list[int]:
    """The canvas [W, H] of an outpaint: the size plus the extension (left, top, right, bottom); else the size."""
    if not any(extend):
        return list(size)
    left, top, right, bottom = extend
    return [size[0] + left + right, size[1] + top + bottom]


def noise_image(height: int, width: int, generator):
    """Uniform pixel noise [1,3,H,W] in [0,1]."""
    import torch  # here: see the module docstring

    return torch.rand(1, 3, height, width, generator=generator)


def gradient_image(height: int, width: int, generator):
    """A linear blend between two random colours in a random direction: [1,3,H,W] in [0,1]."""
    import torch  # here: see the module docstring

    a, b = torch.rand(2, 3, 1, 1, generator=generator)
    angle = torch.rand((), generator=generator) * 2 * torch.pi
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    t = ((xs * angle.cos() + ys * angle.sin()) / 2 + 0.5).clamp(0, 1)
    return (a * (1 - t) + b * t)[None]


def flat_image(height: int, width: int, color: Optional[list[float]], generator):
    """One colour everywhere (random when not given): [1,3,H,W] in [0,1]."""
    import torch  # here: see the module docstring

    rgb = torch.tensor(color) if color is not None else torch.rand(3, generator=generator)
    return rgb.view(1, 3, 1, 1).expand(1, 3, height, width).clone()


def prompt_background(prompt: str) -> Optional[list[float]]:
    """RGB in [0,1] of the colour a prompt names as its background ("... on a red background", "... on black"),
    by CSS colour name; None when it names none."""
    from PIL import ImageColor

    for name in re.findall(r"\bon (?:an? |the )?([a-z]+)(?: background)?\b", prompt.lower()):
        try:
            return [c / 255 for c in ImageColor.getrgb(name)[:3]]
        except ValueError:
            continue
    return None


def initial_image(kind: str, width: int, height: int, generator, image: Optional[str] = None,
                  color: Optional[list[float]] = None, prompt: str = ""):
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
    raise VqclipError(f"init.kind: unknown init '{kind}'; use one of {', '.join(INITS)}")
