"""The loss terms a job may add beside CLIP, one line each: name -> "module:Class" (imported when a job uses it), in
the order their values are summed (the clip terms come first). A new term is one file in vqclip/terms and one line
here."""

from __future__ import annotations

import importlib

from ..errors import VqclipError

TERMS = {
    "init": "vqclip.terms.init:InitTerm",
    "tv": "vqclip.terms.tv:TVTerm",
    "guide": "vqclip.terms.guide:GuideLoss",
    "palette": "vqclip.terms.palette:PaletteTerm",
    "symmetry": "vqclip.terms.symmetry:SymmetryTerm",
    "tile": "vqclip.terms.tile:TileTerm",
    "flow": "vqclip.terms.flow:FlowTerm",  # a stabilised restyle's pull towards the warped previous output
    "edit": "vqclip.terms.edit:EditTerm",  # last: the original is composited over the image the others made
}

SYMMETRY_AXES = ("x", "y")  # x: mirrored left-right, y: mirrored top-bottom


def load(name: str) -> type:
    """The class of the term `name` (imported now); an unknown name is a one-line error naming the choices."""
    if name not in TERMS:
        raise VqclipError(f"unknown loss term {name!r}; use one of {', '.join(TERMS)}")
    module, _, cls = TERMS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
