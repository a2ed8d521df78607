"""The guide classifier of classifier guidance: a small image classifier whose labels are words of the prompt; its
loss term is in vqclip.optim.guidance.

A guide is two files: an architecture JSON (``{"kind": "cnn", "labels": [...], "widths": [...], "strides": [...],
"groups": G, "image_size": S}``; labels are single words, and one that starts with '_' is a catch-all class that no
prompt asks for) and its weights (``.safetensors``, or a torch file read without running code). The network is a
plain stack of 3x3 convolutions (GroupNorm, SiLU), global average pooling and one linear layer; it takes images in
[-1, 1]. The mini preset ships one (`vqclip/mini/train/guide.py`) that tells the mini world's circles,
squares and triangles from near misses; any classifier saved in this format can guide any preset.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import VqclipError, missing, reason
from .checkpoints import load_state_dict

SPEC_KEYS = {"kind", "labels", "widths", "strides", "groups", "image_size"}


@dataclass(frozen=True)
class GuideSpec:
    """The architecture of a guide classifier, as written in its JSON."""

    labels: tuple[str, ...]
    widths: tuple[int, ...]
    strides: tuple[int, ...]
    groups: int = 8
    image_size: int = 64
    kind: str = "cnn"

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "labels": list(self.labels), "widths": list(self.widths),
                           "strides": list(self.strides)}, indent=2) + "\n"


def read_spec(path: str | Path) -> GuideSpec:
    """The GuideSpec of an architecture JSON, with a one-line error naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise VqclipError(f"{missing(path, 'guide architecture JSON')}; check guide.model")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VqclipError(f"{path}: not a readable guide JSON ({reason(exc)})") from None
    if not isinstance(raw, dict):
        raise VqclipError(f"{path}: a guide JSON is a mapping of {', '.join(sorted(SPEC_KEYS))}")
    unknown, absent = set(raw) - SPEC_KEYS, {"labels", "widths", "strides"} - set(raw)
    if unknown or absent:
        what = f"unknown key(s) {', '.join(sorted(unknown))}" if unknown else f"missing {', '.join(sorted(absent))}"
        raise VqclipError(f"{path}: {what}; a guide JSON has {', '.join(sorted(SPEC_KEYS))}")
    spec = GuideSpec(**{**raw, **{k: tuple(raw[k]) for k in ("labels", "widths", "strides") if isinstance(raw[k], list)}})
    ints = lambda v: isinstance(v, tuple) and v and all(_positive_int(x) for x in v)  # noqa: E731
    if spec.kind != "cnn":
        raise VqclipError(f"{path}: unknown guide kind {spec.kind!r}; only 'cnn' is supported")
    if not (isinstance(spec.labels, tuple) and len(spec.labels) >= 2
            and all(isinstance(x, str) and re.fullmatch(r"_?[A-Za-z0-9]+", x) for x in spec.labels)):
        raise VqclipError(f"{path}: labels must be a list of at least two single words (letters and digits; a "
                          f"leading '_' marks a catch-all class)")
    if not (ints(spec.widths) and ints(spec.strides) and len(spec.widths) == len(spec.strides)):
        raise VqclipError(f"{path}: widths and strides must be lists of positive integers of the same length")
    if not (_positive_int(spec.groups) and all(w % spec.groups == 0 for w in spec.widths)):
        raise VqclipError(f"{path}: groups must be a positive integer that divides every width")
    if not (_positive_int(spec.image_size) and spec.image_size >= 8):
        raise VqclipError(f"{path}: image_size must be an integer of at least 8")
    return spec


def _positive_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


class Guide(nn.Module):
    """A guide classifier: images [B,3,H,W] in [0,1] (resized to its input size) -> label logits [B,L]."""

    def __init__(self, spec: GuideSpec):
        super().__init__()
        self.spec = spec
        layers, prev = [], 3
        for width, stride in zip(spec.widths, spec.strides):
            layers += [nn.Conv2d(prev, width, 3, stride, 1), nn.GroupNorm(spec.groups, width), nn.SiLU()]
            prev = width
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(prev, len(spec.labels)))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def forward(self, image: Tensor) -> Tensor:
        size = self.spec.image_size
        if image.shape[-2:] != (size, size):
            image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return self.net(image * 2 - 1)


def load_guide(model: str | Path, weights: str | Path, device: torch.device | str = "cpu") -> Guide:
    """A frozen guide from its architecture JSON and weights (no code from either file is run)."""
    guide = Guide(read_spec(model))
    state = load_state_dict(weights)
    try:
        guide.net.load_state_dict({k.removeprefix("net."): v.float() for k, v in state.items()})
    except RuntimeError as exc:
        raise VqclipError(f"{weights}: does not fit the guide architecture in {model} "
                          f"({reason(exc, whole=True)})") from None
    return guide.to(device).eval().requires_grad_(False)


def prompt_label(prompt: str, labels: tuple[str, ...]) -> int | None:
    """Index of the first label word the prompt names (whole words, any case, plural 's' allowed); None if none.
    Labels that start with '_' (a catch-all class such as '_none') are never targets."""
    words = re.findall(r"[a-z0-9]+", prompt.lower())
    for word in words:
        for i, label in enumerate(labels):
            if word in (label.lower(), label.lower() + "s"):
                return i
    return None
