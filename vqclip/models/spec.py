"""How a job names a CLIP, parsed once into one explicit form (as open_clip names models), never guessed later.

    ViT-B-32 + openai              an open_clip architecture and a pretrained tag (or a weights file, or none)
    path/arch.json + weights.pt    an open_clip architecture JSON and a weights file (or none: random weights)
    local-dir:PATH, or PATH        a folder holding open_clip_config.json and its weights (a Hugging Face download)
    hf-hub:org/repo                a Hugging Face hub repository in open_clip's layout (open_clip fetches it)
    ViT-B/32, ViT-L/14@336px       OpenAI's names (as the `clip` package and nerdyrodent / pixray scripts write them),
                                   read as open_clip's ViT-B-32, ViT-L-14-336, with a notice

The form is read from the text alone: a model with a path separator, a leading '.' or '~' is a path (a `.json` one
an architecture file, any other a folder); a pretrained value with a path separator or a weights suffix is a file,
any other a tag. An OpenAI name is a name even though it holds a '/' (a folder of that name: write ./ViT-B/32).
What is on disk is checked afterwards, with an error that names the form.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from dataclasses import dataclass
from typing import Optional

from ..errors import VqclipError, cut, shown

HUB, LOCAL_DIR = "hf-hub:", "local-dir:"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
RANDOM = ("none", "null", "random")  # pretrained values that mean random weights (the CLIP commands' --clip-pretrained)
_OPENAI = re.compile(r"(ViT-[A-Za-z]+)/(\d+)(?:@(\d+)px)?", re.IGNORECASE)  # ViT-B/32, ViT-L/14@336px


def upscaler_is_path(name: str) -> bool:
    """True when an upscaler is named by a file path (a folder separator, a leading '.' or '~', a weights suffix), not
    by a preset."""
    name = name.strip()
    return "/" in name or "\\" in name or name.startswith((".", "~")) or name.lower().endswith(WEIGHT_SUFFIXES)


log = logging.getLogger("vqclip")


def openai_name(model: str) -> str | None:
    """open_clip's name for a CLIP named as OpenAI's `clip` package names it (ViT-B/32 -> ViT-B-32, ViT-L/14@336px ->
    ViT-L-14-336), else None. RN50, RN101, RN50x4 ... are the same in both."""
    match = _OPENAI.fullmatch(model.strip()) if isinstance(model, str) else None
    if not match:
        return None
    arch, patch, px = match.groups()
    arch = "ViT-" + (arch[4:].upper() if len(arch[4:]) == 1 else arch[4:])  # vit-b -> ViT-B; ViT-bigG, ViT-g kept
    return f"{arch}-{patch}" + (f"-{px}" if px else "")


def canonical_model(model):
    """`model` as vqclip names it: an OpenAI name becomes open_clip's, with a notice; anything else unchanged."""
    name = openai_name(model)
    if name is None:
        return model
    log.info("CLIP '%s' is OpenAI's name for open_clip's %s; using %s", model.strip(), name, name)
    return name


def check_model_name(name: str) -> None:
    """A one-line error, with a "did you mean" from open_clip.list_models(), when `name` is no open_clip model."""
    import open_clip  # here: this module is read for --help, which needs no torch

    names = open_clip.list_models()
    if name in names:
        return
    folded = {n.lower(): n for n in names}
    close = ([folded[name.lower()]] if name.lower() in folded else
             [folded[c] for c in difflib.get_close_matches(name.lower(), list(folded), n=3, cutoff=0.6)])
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    here = f"; for the folder or file here, write ./{name}" if os.path.exists(name) else ""
    raise VqclipError(f"unknown CLIP model '{name}': {hint}see open_clip.list_models(), or give an architecture JSON, "
                      f"a folder, {HUB}ORG/REPO or {LOCAL_DIR}PATH{here}")


def _is_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.startswith((".", "~"))


@dataclass(frozen=True)
class ClipSpec:
    """One CLIP: `form` is "name", "json", "dir" or "hub"; `model` the architecture name, JSON path, folder or repo
    id; `pretrained` the tag (name form) or weights file, None for random weights (or the folder's / hub's own)."""

    form: str
    model: str
    pretrained: Optional[str] = None

    @property
    def weights_file(self) -> bool:
        """True when `pretrained` names a file (not a tag)."""
        return bool(self.pretrained) and (self.form != "name" or _is_path(self.pretrained)
                                          or self.pretrained.lower().endswith(WEIGHT_SUFFIXES))

    @classmethod
    def parse(cls, model: str, pretrained: Optional[str] = None) -> "ClipSpec":
        """The form of (model, pretrained) as a job or the CLI gives them; a one-line error for an empty name or a
        pretrained value the form cannot take."""
        if not isinstance(model, str) or not model.strip():
            raise VqclipError(f"clip.model: expected an open_clip name, a JSON or folder path, {HUB}ORG/REPO or "
                              f"{LOCAL_DIR}PATH, got {shown(model)}")
        model = openai_name(model) or model.strip()
        if pretrained is not None and (not isinstance(pretrained, str) or pretrained.strip().lower() in RANDOM
                                       or not pretrained.strip()):
            if pretrained is not None and not isinstance(pretrained, str):
                raise VqclipError(f"clip.pretrained: expected a tag or a weights file, got {shown(pretrained)}")
            pretrained = None
        pretrained = pretrained.strip() if pretrained else None
        if model.startswith(HUB):
            if pretrained:
                raise VqclipError(f"clip: {cut(model)} brings its own weights; drop pretrained {shown(pretrained)}")
            if not model[len(HUB):].strip("/"):
                raise VqclipError(f"clip.model: {shown(model)} names no repository; write {HUB}ORG/REPO")
            return cls("hub", model[len(HUB):].strip("/"), None)
        if model.startswith(LOCAL_DIR):
            return cls("dir", os.path.expanduser(model[len(LOCAL_DIR):]), pretrained)
        if model.lower().endswith(".json"):
            return cls("json", os.path.expanduser(model), pretrained)
        if _is_path(model):
            return cls("dir", os.path.expanduser(model), pretrained)
        return cls("name", model, pretrained)

    def describe(self) -> str:
        """A short name for notices: the architecture name, or the file or folder name."""
        return self.model if self.form in ("name", "hub") else os.path.basename(self.model.rstrip("/")) or self.model
