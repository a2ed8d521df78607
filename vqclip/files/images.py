"""Image files: the one image loader, the one resize-to-cover, and PNGs that carry their job as a JSON text chunk
(and as the A1111-style `parameters` chunk other tools read).

torch is imported inside the two functions that make or take tensors, so the config checks read images without it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ..errors import VqclipError, missing, path_problem, reason
from .atomic import atomic_path

METADATA_KEY = "vqclip"
MAX_METADATA = 1 << 20  # bytes: a job is a few KB; a chunk beyond this is no vqclip job (and is not parsed)


def open_rgb(path: str | Path) -> Image.Image:
    """An image file as an RGB PIL image (decoded now, file closed); a one-line error for a missing, unreadable or
    decompression-bomb file."""
    path = Path(path)
    if not path.is_file():
        raise VqclipError(missing(path, "image file"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is a bad file, not a warning
            with Image.open(path) as im:
                return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise VqclipError(f"{path}: not a readable image ({reason(exc)})") from None


def cover(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`im` resized (Lanczos) to cover size = (W, H) and centre-cropped to it; unchanged when it already fits."""
    w, h = size
    if im.size == (w, h):
        return im
    scale = max(w / im.width, h / im.height)
    im = im.resize((max(w, round(im.width * scale)), max(h, round(im.height * scale))), Image.LANCZOS)
    left, top = (im.width - w) // 2, (im.height - h) // 2
    return im.crop((left, top, left + w, top + h))


def to_tensor(im: Image.Image | np.ndarray):
    """An RGB PIL image or uint8 array [h,w,3] as a float tensor [1,3,H,W] in [0,1]."""
    import torch  # here: the config checks use this module without torch

    array = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def load_image(path: str | Path, size: tuple[int, int] | None = None):
    """An image file as [1,3,H,W] in [0,1]; with size=(W,H) resized to cover it and centre-cropped (`cover`)."""
    im = open_rgb(path)
    return to_tensor(cover(im, size) if size is not None else im)


def to_pil(image) -> Image.Image:
    """An image tensor [1,3,H,W] or [3,H,W] in [0,1] as an 8-bit RGB PIL image (rounded, clamped)."""
    array = image.detach().float().squeeze(0).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def save_png(image, path: Path, metadata: dict | None = None, parameters: str | None = None) -> Path:
    """Save an image tensor [1,3,H,W] in [0,1] as PNG, atomically, with `metadata` as JSON in the text chunk
    'vqclip' and `parameters` (A1111's infotext, `vqclip.files.infotext`) in the chunk 'parameters'."""
    info = None
    if metadata is not None or parameters is not None:
        info = PngImagePlugin.PngInfo()
    if metadata is not None:
        info.add_text(METADATA_KEY, json.dumps(metadata, sort_keys=True))
    if parameters is not None:
        info.add_text("parameters", parameters)  # tEXt, or iTXt (UTF-8) when it is not Latin-1, as A1111 writes it
    with atomic_path(Path(path)) as tmp:
        to_pil(image).save(tmp, format="PNG", pnginfo=info)
    return Path(path)


def save_mask(source: str | Path, path: Path) -> Path:
    """An edit's mask file as a grey 8-bit PNG (its luminance, at its own size), written atomically: the run folder's
    mask.png, which its job names so that a resume or `--from final.png` repeats the edit."""
    with atomic_path(Path(path)) as tmp:
        open_rgb(source).convert("L").save(tmp, format="PNG")
    return Path(path)


def read_png_text(path: str | Path) -> dict[str, str]:
    """A PNG's text chunks {key: text}, or a one-line error for a missing, unreadable or non-PNG file."""
    path = Path(path)
    bad = path_problem(path)
    if bad or not path.is_file():
        raise VqclipError(missing(path, "file"))
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise VqclipError(f"{path}: a {im.format} image, not a PNG; give the final.png of a vqclip run")
            im.load()  # text chunks after the image data are read too
            return dict(getattr(im, "text", {}))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,  # PIL: SyntaxError for broken chunks,
            Image.DecompressionBombError) as exc:                       # ValueError for too much text
        raise VqclipError(f"{path}: not a readable PNG ({reason(exc, 120, whole=True)})") from None


def read_png_json(path: str | Path) -> dict:
    """The JSON mapping in a PNG's 'vqclip' text chunk, or a one-line error naming the file and the problem."""
    text = read_png_text(path).get(METADATA_KEY)
    if text is None:
        raise VqclipError(f"{path}: carries no vqclip metadata (was it written by vqclip generate?)")
    if len(text) > MAX_METADATA:
        raise VqclipError(f"{path}: its vqclip metadata is {len(text) / 1e6:.1f} MB, far more than any job; it was "
                          "not written by vqclip")
    try:
        data = json.loads(text)
    except ValueError:
        raise VqclipError(f"{path}: its vqclip metadata is not valid JSON") from None
    if not isinstance(data, dict):
        raise VqclipError(f"{path}: its vqclip metadata is not a JSON mapping")
    return data


def read_metadata(path: str | Path) -> dict:
    """The JSON that vqclip embedded in a run's PNG (with its 'config'), or a one-line error if there is none."""
    data = read_png_json(path)
    if not isinstance(data.get("config"), dict):
        raise VqclipError(f"{path}: its vqclip metadata has no 'config' mapping")
    return data
