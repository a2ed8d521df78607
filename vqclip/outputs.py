"""Run folders and the files in them: atomic writes, PNGs that carry their own config, never overwriting a run."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .errors import VqclipError, missing, reason

METADATA_KEY = "vqclip"
RUN_MARKERS = ("final.png", "job.yaml", "frames")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to `path` via a temporary file in the same folder and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def to_pil(image: torch.Tensor) -> Image.Image:
    """An image [1,3,H,W] or [3,H,W] in [0,1] as an 8-bit RGB PIL image."""
    array = image.detach().float().squeeze(0).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def save_png(image: torch.Tensor, path: Path, metadata: dict | None = None) -> Path:
    """Save an image [1,3,H,W] in [0,1] as PNG, atomically, with `metadata` as JSON in a text chunk 'vqclip'."""
    info = None
    if metadata is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text(METADATA_KEY, json.dumps(metadata, sort_keys=True))
    tmp = path.with_name(f".{path.name}.tmp")
    to_pil(image).save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)
    return path


def read_metadata(path: str | Path) -> dict:
    """The JSON that vqclip embedded in a run's PNG (with its 'config'), or a one-line error if there is none."""
    data = read_png_json(path)
    if not isinstance(data.get("config"), dict):
        raise VqclipError(f"{path}: its vqclip metadata has no 'config' mapping")
    return data


def read_png_json(path: str | Path) -> dict:
    """The JSON mapping in a PNG's 'vqclip' text chunk, or a one-line error naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise VqclipError(missing(path, "file"))
    try:
        with Image.open(path) as im:
            text = getattr(im, "text", {}).get(METADATA_KEY)
    except (UnidentifiedImageError, OSError, SyntaxError,  # PIL raises SyntaxError for broken chunks
            Image.DecompressionBombError) as exc:
        raise VqclipError(f"{path}: not a readable PNG ({reason(exc, 120, whole=True)})") from None
    if text is None:
        raise VqclipError(f"{path}: carries no vqclip metadata (was it written by vqclip generate?)")
    try:
        data = json.loads(text)
    except ValueError:
        raise VqclipError(f"{path}: its vqclip metadata is not valid JSON") from None
    if not isinstance(data, dict):
        raise VqclipError(f"{path}: its vqclip metadata is not a JSON mapping")
    return data


def slug(text: str, limit: int = 40) -> str:
    """A filesystem-safe short name for a prompt."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "run"


def default_run_dir(prompt: str, root: Path = Path("outputs")) -> Path:
    """outputs/<timestamp>-<prompt-slug>, made unique with a counter."""
    base = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug(prompt)}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def check_run_dir(path: Path) -> Path:
    """Refuse a run folder that is a file or already holds a run (runs are never overwritten)."""
    if path.exists() and not path.is_dir():
        raise VqclipError(f"{path}: exists and is not a folder; choose another --out")
    if path.is_dir() and any((path / m).exists() for m in RUN_MARKERS):
        raise VqclipError(f"{path}: already holds a run; choose another --out (runs are never overwritten)")
    nearest = next(p for p in (path, *path.parents) if p.exists())  # the folder the run's folders are made in
    if not nearest.is_dir():
        raise VqclipError(f"{path}: {nearest} is not a folder; choose another --out")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise VqclipError(f"{path}: cannot write in {nearest}; choose another --out")
    return path


def claim_run_dir(path: Path) -> Path:
    """Create the run folder and its frames/ after `check_run_dir`."""
    check_run_dir(path)
    try:
        (path / "frames").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VqclipError(f"{path}: cannot make the run folder ({exc.strerror}); choose another --out") from None
    return path


def release_run_dir(path: Path) -> None:
    """Undo `claim_run_dir` for a run that failed before making anything (only job.yaml and an empty frames/), so
    the failure leaves no folder that blocks the same --out; anything more is kept."""
    if not path.is_dir() or {p.name for p in path.iterdir()} - {"job.yaml", "frames"}:
        return
    if (path / "frames").is_dir() and any((path / "frames").iterdir()):
        return
    (path / "job.yaml").unlink(missing_ok=True)
    if (path / "frames").is_dir():
        (path / "frames").rmdir()
    path.rmdir()


def versions() -> dict[str, str]:
    """Versions of vqclip and the libraries that shape its output."""
    import open_clip

    from . import __version__

    return {"vqclip": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__}
