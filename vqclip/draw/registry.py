"""The image models a job can choose (`drawer.name`): name -> "module:Class", imported only when a job uses it, so
the config takes its choices from here without torch. A new drawer is one file in vqclip/draw and one line here (and
one in `DEFAULTS` when it needs option values of its own)."""

from __future__ import annotations

import copy
import importlib
from typing import Optional

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
#: drawers whose step costs a fraction of a VQGAN step take more steps than the preset gives: its steps times this
#: (pixel: a step costs 21-32% of mini's VQGAN step, so twice the steps still take under two thirds of the time;
#: on mini 100 -> 200 steps took shape colour from 85% to 92% of 48 images, benchmarks/mini_quality.py)
#: (fft: 200 steps took colour from 75% to 94% of 48 images with the cutoff and balanced colour)
STEPS_SCALE = {"pixel": 2, "fft": 2}
#: the drawers that decode with the job's VQGAN: for the others no VQGAN is resolved, downloaded or loaded
USES_VQGAN = ("vqgan",)


def uses_vqgan(name: str) -> bool:
    """Whether a job with this drawer needs its VQGAN files and network."""
    return name in USES_VQGAN


def defaults(name, steps: Optional[int] = None) -> dict:
    """The option values drawer `name` brings (a fresh copy: the layer may be changed), none for any other name;
    with the preset's `steps`, a drawer in STEPS_SCALE brings its own number of steps too."""
    if not isinstance(name, str):
        return {}
    out = copy.deepcopy(DEFAULTS.get(name, {}))
    if name in STEPS_SCALE and isinstance(steps, int) and not isinstance(steps, bool):
        out["steps"] = int(round(steps * STEPS_SCALE[name]))
    return out


def load(name: str):
    """The drawer class of a name (imported now); an unknown name is a one-line error naming the choices."""
    if name not in DRAWERS:
        raise VqclipError(f"drawer.name: unknown drawer {name!r}; use one of {', '.join(DRAWERS)}")
    module, _, cls = DRAWERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
