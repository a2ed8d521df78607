"""The image models a job can choose (`drawer.name`): name -> "module:Class", imported only when a job uses it, so
the config takes its choices from here without torch. A new drawer is one file in vqclip/draw and one line here (and
one in `DEFAULTS` when it needs option values of its own)."""

from __future__ import annotations

import copy
import importlib

from ..errors import VqclipError

DRAWERS = {
    "vqgan": "vqclip.draw.vqgan:VQGANDrawer",  # VQGAN latents, decoded by the preset's taming decoder
    "pixel": "vqclip.draw.pixel:PixelDrawer",  # a low-resolution RGB grid shown with nearest upsampling
    "fft": "vqclip.draw.fft:FFTDrawer",  # a Fourier-parameterised image with decorrelated colour
}
#: the option values a drawer needs (a job layer): over the preset's defaults, beneath every value the user sets
DEFAULTS = {
    "pixel": {"tv_weight": 0.0},  # mini: colour right in 58% with the preset's TV 40, 85% without (docs)
    "fft": {"tv_weight": 0.0},  # its 1/f spectrum is its smoothness prior (Lucid's fft_image has no TV)
}
#: the drawers that decode with the job's VQGAN: for the others no VQGAN is resolved, downloaded or loaded
USES_VQGAN = ("vqgan",)


def uses_vqgan(name: str) -> bool:
    """Whether a job with this drawer needs its VQGAN files and network."""
    return name in USES_VQGAN


def defaults(name) -> dict:
    """The option values drawer `name` brings (a fresh copy: the layer may be changed), none for any other name."""
    return copy.deepcopy(DEFAULTS.get(name, {})) if isinstance(name, str) else {}


def load(name: str):
    """The drawer class of a name (imported now); an unknown name is a one-line error naming the choices."""
    if name not in DRAWERS:
        raise VqclipError(f"drawer.name: unknown drawer {name!r}; use one of {', '.join(DRAWERS)}")
    module, _, cls = DRAWERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
