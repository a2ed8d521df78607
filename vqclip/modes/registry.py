"""The modes a job runs in, by name: one line per mode, its class and its rules as lazy import paths ("module:Name"),
so that this module, the config's `mode` choices and its checks stay torch-free. A new mode is one new file and one
line here. `mode_name` is the one place that resolves a job's `mode: auto` (as today's jobs imply it)."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import VqclipError, shown

MODES = {  # name -> (the mode class, run by the pipeline; its torch-free rules: checks, input files, frame count)
    "still": ("vqclip.modes.still:Still", "vqclip.modes.rules:StillRules"),
    "zoom": ("vqclip.modes.zoom:Zoom", "vqclip.modes.rules:ZoomRules"),
    "restyle": ("vqclip.modes.restyle:Restyle", "vqclip.modes.rules:RestyleRules"),
}
AUTO = "auto"
MODE_CHOICES = (AUTO, *MODES)


def resolve(mode: Any, zoom: bool, video: bool) -> str:
    """The registry name of a mode as a job sets it; `auto` (or any name not in the registry, left for the checks to
    refuse) as the job's sections imply it: a video to restyle, else a zoom animation, else a still image."""
    if isinstance(mode, str) and mode in MODES:
        return mode
    return "restyle" if video else "zoom" if zoom else "still"


def mode_name(cfg) -> str:
    """The mode a resolved job (`GenerateConfig`) runs in, by its registry name."""
    return resolve(cfg.mode, cfg.animation.mode == "zoom", bool(cfg.restyle.input))


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _entry(name: str) -> tuple[str, str]:
    if name not in MODES:
        raise VqclipError(f"mode: unknown mode {shown(name)}; use one of {', '.join(MODE_CHOICES)}")
    return MODES[name]


def load(name: str) -> type:
    """The mode class of a registry name (imports it, and torch with it)."""
    return _import(_entry(name)[0])


def rules(name: str) -> Any:
    """The torch-free rules of a registry name's mode (`vqclip.modes.rules.StillRules`)."""
    return _import(_entry(name)[1])()


def rules_of(cfg) -> Any:
    """The rules of the mode a resolved job runs in."""
    return rules(mode_name(cfg))
