"""The perceptual term of a VQGAN's training: taming's `LPIPS` (VGG16 features, learned linear layers) built without
its downloads and given weights read without running code, from the `lpips-vgg` and `vgg16-imagenet` auxiliary
presets (`vqclip models download lpips-vgg vgg16-imagenet`); None, said in one line, when they are not on disk."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Optional

import torch
from taming.modules.losses.lpips import LPIPS, NetLinLayer, ScalingLayer
from taming.modules.losses.lpips import vgg16 as taming_vgg16
from torch import nn

from vqclip.errors import VqclipError
from vqclip.models.auxmodels import aux_file

LIN_PRESET, VGG_PRESET = "lpips-vgg", "vgg16-imagenet"


def build_lpips(lin_path: Path, vgg_path: Path) -> LPIPS:
    """taming's LPIPS (in eval mode, frozen) with torchvision's VGG16 ImageNet weights (features.N.* -> the slice
    holding layer N) and the LPIPS linear layers, both read weights-only; a file that does not fit is one line."""
    lp = LPIPS.__new__(LPIPS)  # its __init__ downloads both files; the same modules, built here without
    nn.Module.__init__(lp)
    lp.scaling_layer, lp.chns = ScalingLayer(), [64, 128, 256, 512, 512]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # torchvision's notice that `pretrained=` is deprecated: no weights asked
        lp.net = taming_vgg16(requires_grad=False, pretrained=False)
    for k, c in enumerate(lp.chns):
        setattr(lp, f"lin{k}", NetLinLayer(c, use_dropout=True))
    try:
        vgg = torch.load(vgg_path, map_location="cpu", weights_only=True)
        lin = torch.load(lin_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: pickle and zip errors of many kinds
        raise VqclipError(f"LPIPS weights ({vgg_path}, {lin_path}) are not readable ({exc.__class__.__name__}); "
                          f"fetch them again with `vqclip models download {LIN_PRESET} {VGG_PRESET}`") from None
    state = {f"net.{s}.{name}.{p}": vgg.get(f"features.{name}.{p}") for s in ("slice1", "slice2", "slice3", "slice4",
             "slice5") for name, _ in getattr(lp.net, s).named_children() for p in ("weight", "bias")}
    state.update(lin)
    expected = {k: v for k, v in lp.state_dict().items() if not k.startswith("scaling_layer.")}  # its constants
    bad = [k for k in expected if k not in state or state[k] is None or state[k].shape != expected[k].shape]
    if bad:
        raise VqclipError(f"LPIPS weights ({vgg_path}, {lin_path}) do not fit taming's LPIPS (e.g. {bad[0]}); fetch "
                          f"them again with `vqclip models download {LIN_PRESET} {VGG_PRESET}`")
    lp.load_state_dict({k: state[k] for k in expected}, strict=False)
    return lp.eval().requires_grad_(False)


def find_lpips(home_dir: Optional[Path] = None, log: Optional[logging.Logger] = None) -> Optional[LPIPS]:
    """taming's LPIPS with its weights when both presets are on disk (checked, never downloaded here); else None and
    one log line saying that the training goes on without the perceptual term and how to add it."""
    try:
        lin = aux_file(LIN_PRESET, download=False, progress=False, home_dir=home_dir)
        vgg = aux_file(VGG_PRESET, download=False, progress=False, home_dir=home_dir)
    except VqclipError:
        (log or logging.getLogger("vqclip")).warning(
            "no LPIPS weights on disk: training without the perceptual term (L1 + codebook + discriminator); add it "
            "with `vqclip models download %s %s`", LIN_PRESET, VGG_PRESET)
        return None
    return build_lpips(lin, vgg)
