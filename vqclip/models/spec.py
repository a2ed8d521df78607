"""How a job names a CLIP, parsed once into one explicit form (as open_clip names models), never guessed later.

    ViT-B-32 + openai              an open_clip architecture and a pretrained tag (or a weights file, or none)
    path/arch.json + weights.pt    an open_clip architecture JSON and a weights file (or none: random weights)
    local-dir:PATH, or PATH        a folder holding open_clip_config.json and its weights (a Hugging Face download)
    hf-hub:org/repo                a Hugging Face hub repository in open_clip's layout (open_clip fetches it)

The form is read from the text alone: a model with a path separator, a leading '.' or '~' is a path (a `.json` one
an architecture file, any other a folder); a pretrained value with a path separator or a weights suffix is a file,
any other a tag. What is on disk is checked afterwards, with an error that names the form.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ..errors import VqclipError

HUB, LOCAL_DIR = "hf-hub:", "local-dir:"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
RANDOM = ("none", "null", "random")  # pretrained values that mean random weights (the CLIP commands' --clip-pretrained)


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
                              f"{LOCAL_DIR}PATH, got {model!r}")
        model = model.strip()
        if pretrained is not None and (not isinstance(pretrained, str) or pretrained.strip().lower() in RANDOM
                                       or not pretrained.strip()):
            if pretrained is not None and not isinstance(pretrained, str):
                raise VqclipError(f"clip.pretrained: expected a tag or a weights file, got {pretrained!r}")
            pretrained = None
        pretrained = pretrained.strip() if pretrained else None
        if model.startswith(HUB):
            if pretrained:
                raise VqclipError(f"clip: {model} brings its own weights; drop pretrained '{pretrained}'")
            if not model[len(HUB):].strip("/"):
                raise VqclipError(f"clip.model: '{model}' names no repository; write {HUB}ORG/REPO")
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
