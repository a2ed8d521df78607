"""Upscaler presets as data (`upscalers.yaml`) and an upscaler named by preset or path, resolved to a local file.

A preset's weights live in `<home>/upscalers/` and are fetched and checked like a VQGAN's (`download.fetch`: resume,
mirrors, size, sha256 recorded in `<home>/manifest.json` on first download and verified on every later load).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from ..errors import VqclipError, missing
from ..files.jobyaml import read_yaml
from .download import fetch
from .integrity import Manifest
from .presets import MANIFEST_NAME, FileSpec, _check_keys, _file_spec, _home_or_default, _string
from .spec import upscaler_is_path

BUILTIN_FILE = Path(__file__).resolve().parent / "upscalers.yaml"
FOLDER = "upscalers"  # under the model home


@dataclass(frozen=True)
class UpscalerPreset:
    """A named upscaler: one weights file and the scale it makes."""

    name: str
    description: str
    file: FileSpec
    scale: int
    source: str = ""
    licence: str = ""

    def path(self, home_dir: Path | None = None) -> Path:
        """Where its weights live: `<home>/upscalers/<filename>`."""
        return _home_or_default(home_dir) / FOLDER / self.file.filename


def load_upscalers_file(path: Path | None = None) -> dict[str, UpscalerPreset]:
    """Every upscaler preset of one YAML file (default: the built-in one), validated strictly (an error names the
    file and the key)."""
    path = BUILTIN_FILE if path is None else path
    data = _check_keys(read_yaml(path, "upscalers file") or {}, str(path), {"upscalers"},
                       {"version"})
    found = {}
    for name, body in (data["upscalers"] or {}).items():
        where = f"{path}: upscalers.{name}"
        body = _check_keys(body, where, {"description", "scale", "file"}, {"source", "licence"})
        scale = body["scale"]
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
            raise VqclipError(f"{where}.scale: expected an integer >= 2, got {scale!r}")
        found[str(name)] = UpscalerPreset(str(name), _string(body["description"], f"{where}.description"),
                                          _file_spec(body["file"], f"{where}.file", embedded=False), scale,
                                          body.get("source", ""), body.get("licence", ""))
    return found


def get_upscaler(name: str) -> UpscalerPreset:
    """The upscaler preset `name` (any case); an unknown name lists the known ones."""
    presets = load_upscalers_file()
    by_lower = {k.lower(): p for k, p in presets.items()}
    if name.strip().lower() in by_lower:
        return by_lower[name.strip().lower()]
    close = difflib.get_close_matches(name, list(presets), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise VqclipError(f"unknown upscaler '{name}': {hint}known upscalers are {', '.join(presets)}, or give the path "
                      "of a weights file (.pth or .safetensors)")


def upscaler_file(name: str, *, download: bool = True, progress: bool = True, home_dir: Path | None = None) -> Path:
    """The local weights file of an upscaler named by preset or path: a preset's fetched once and verified, a path
    checked to exist. One-line errors for a missing file or an unknown name."""
    if not isinstance(name, str) or not name.strip():
        raise VqclipError(f"upscale model: expected a preset name or a weights file, got {name!r}")
    name = name.strip()
    if upscaler_is_path(name) or Path(name).expanduser().is_file():
        path = Path(name).expanduser()
        if not path.is_file():
            raise VqclipError(f"{missing(path, 'upscaler weights file')}; check the path, or name a preset "
                              f"({', '.join(load_upscalers_file())})")
        return path
    preset = get_upscaler(name)
    folder = preset.path(home_dir).parent
    if not download and not preset.path(home_dir).is_file():
        raise VqclipError(f"upscaler '{preset.name}' is not on disk ({preset.path(home_dir)}) and downloads are off")
    return fetch(preset.file, folder, progress=progress,
                 manifest=Manifest(_home_or_default(home_dir) / MANIFEST_NAME))
