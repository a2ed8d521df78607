"""Auxiliary model presets as data (`auxmodels.yaml`): networks that serve a run without drawing it (the 3D camera's
depth model, optical flow), each named by preset or path and resolved to one local weights file.

A preset's weights live in `<home>/auxmodels/` and are fetched and checked like an upscaler's (`download.fetch`:
resume, mirrors, size, sha256 pinned or recorded in `<home>/manifest.json` on first download). Nothing here imports
torch: `vqclip models` lists these presets without loading a network.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import VqclipError, missing
from ..files.jobyaml import read_yaml
from .download import DownloadError, fetch
from .integrity import Manifest
from .presets import MANIFEST_NAME, FileSpec, _check_keys, _file_spec, _home_or_default, _string
from .spec import upscaler_is_path

BUILTIN_FILE = Path(__file__).resolve().parent / "auxmodels.yaml"
FOLDER = "auxmodels"  # under the model home
KINDS = ("depth", "flow", "lpips")
_PREFIX = re.compile(r"^[0-9a-f]{8,63}$")


@dataclass(frozen=True)
class AuxPreset:
    """A named auxiliary model: one weights file, what kind of network reads it, and where it comes from."""

    name: str
    kind: str
    description: str
    file: FileSpec
    source: str = ""
    licence: str = ""
    sha256_prefix: str | None = None  # leading hex digits of the sha256 that the published file name carries

    def path(self, home_dir: Path | None = None) -> Path:
        """Where its weights live: `<home>/auxmodels/<filename>`."""
        return _home_or_default(home_dir) / FOLDER / self.file.filename


def load_aux_file(path: Path | None = None) -> dict[str, AuxPreset]:
    """Every auxiliary preset of one YAML file (default: the built-in one), validated strictly (an error names the
    file and the key)."""
    path = BUILTIN_FILE if path is None else path
    data = _check_keys(read_yaml(path, "auxiliary models file") or {}, str(path), {"auxmodels"}, {"version"})
    found = {}
    for name, body in (data["auxmodels"] or {}).items():
        where = f"{path}: auxmodels.{name}"
        body = _check_keys(body, where, {"kind", "description", "file"}, {"source", "licence", "sha256_prefix"})
        if body["kind"] not in KINDS:
            raise VqclipError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {body['kind']!r}")
        prefix = body.get("sha256_prefix")
        if prefix is not None and (not isinstance(prefix, str) or not _PREFIX.match(prefix)):
            raise VqclipError(f"{where}.sha256_prefix: expected 8 to 63 lowercase hexadecimal characters, got "
                              f"{prefix!r}")
        spec = _file_spec(body["file"], f"{where}.file", embedded=False)
        if prefix is not None and spec.sha256 is not None and not spec.sha256.startswith(prefix):
            raise VqclipError(f"{where}: sha256_prefix {prefix} disagrees with the pinned sha256 {spec.sha256[:16]}...")
        found[str(name)] = AuxPreset(str(name), body["kind"], _string(body["description"], f"{where}.description"),
                                     spec, body.get("source", ""), body.get("licence", ""), prefix)
    return found


def get_aux(name: str, kind: str | None = None) -> AuxPreset:
    """The auxiliary preset `name` (any case), of `kind` when given; an unknown name lists the known ones."""
    presets = {k: p for k, p in load_aux_file().items() if kind is None or p.kind == kind}
    what = f"{kind} model" if kind else "auxiliary model"
    by_lower = {k.lower(): p for k, p in presets.items()}
    if name.strip().lower() in by_lower:
        return by_lower[name.strip().lower()]
    close = difflib.get_close_matches(name, list(presets), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise VqclipError(f"unknown {what} '{name}': {hint}known {what}s are {', '.join(presets) or 'none'}, or give the "
                      "path of a weights file (.pth or .safetensors)")


def is_aux(name: str) -> bool:
    """True when `name` (any case) is an auxiliary preset (so `vqclip models` handles it here, not as a VQGAN)."""
    return name.strip().lower() in {k.lower() for k in load_aux_file()}


def check_prefix(preset: AuxPreset, path: Path, manifest: Manifest) -> None:
    """Refuse a file whose recorded sha256 does not start with the digits its published name carries: the record is
    forgotten and the file deleted, so the next fetch downloads it again."""
    entry = manifest.entry(path) if preset.sha256_prefix else None
    if entry is None or str(entry.get("sha256", "")).startswith(preset.sha256_prefix):
        return
    manifest.forget(path)
    path.unlink(missing_ok=True)
    raise VqclipError(f"{path}: sha256 {str(entry.get('sha256'))[:16]}... does not start with {preset.sha256_prefix}, "
                      f"which its published name carries; deleted it: run `vqclip models download {preset.name}` to "
                      "fetch a good copy")


def aux_file(name: str, *, download: bool = True, progress: bool = True, home_dir: Path | None = None,
             kind: str | None = None) -> Path:
    """The local weights file of an auxiliary model named by preset (of `kind` when given) or path: a preset's
    fetched once and verified, a path checked to exist. One-line errors for a missing file, an unknown name, or a
    preset not on disk that cannot be downloaded (naming `vqclip models download NAME`)."""
    what = f"{kind} model" if kind else "auxiliary model"
    if not isinstance(name, str) or not name.strip():
        raise VqclipError(f"{what}: expected a preset name or a weights file, got {name!r}")
    name = name.strip()
    if upscaler_is_path(name) or Path(name).expanduser().is_file():
        path = Path(name).expanduser()
        if not path.is_file():
            raise VqclipError(f"{missing(path, f'{what} weights file')}; check the path, or name a preset "
                              f"({', '.join(p.name for p in load_aux_file().values() if kind in (None, p.kind))})")
        return path
    preset = get_aux(name, kind)
    path = preset.path(home_dir)
    fetch_it = f"fetch it with `vqclip models download {preset.name}`"
    if not download and not path.is_file():
        raise VqclipError(f"{what} '{preset.name}' is not on disk ({path}) and downloads are off; {fetch_it}")
    manifest = Manifest(_home_or_default(home_dir) / MANIFEST_NAME)
    try:
        found = fetch(preset.file, path.parent, progress=progress, manifest=manifest)
    except DownloadError as exc:
        why = next((r for m in exc.missing for r in m.reasons), "every host failed")
        raise VqclipError(f"{what} '{preset.name}' is not on disk and could not be downloaded ({why}); {fetch_it} "
                          f"where there is a network, or put {preset.file.filename} at {path}") from None
    check_prefix(preset, found, manifest)
    return found
