"""Where a region prompt pulls: the named regions of the canvas (left, right, top, bottom, centre, border) and mask
images, as masks [H,W] in [0,1] (numpy; torch-free, so the config checks read them before anything heavy loads).

A named region is a box in continuous image coordinates (left: x in [0, W/2)); each pixel [j, j+1) x [i, i+1) holds
the share of its area inside the box, so an odd width splits its middle column half and half. A mask image is read
as grey (white = inside, grey = partly) and resized to the canvas with a notice.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import VqclipError, shown, shown_path

log = logging.getLogger("vqclip")

#: region name -> its box (x0, y0, x1, y1) as shares of the canvas; border is all but the centre
BOXES = {"left": (0, 0, 0.5, 1), "right": (0.5, 0, 1, 1), "top": (0, 0, 1, 0.5), "bottom": (0, 0.5, 1, 1),
         "centre": (0.25, 0.25, 0.75, 0.75)}
REGIONS = (*BOXES, "border")
ALIASES = {"center": "centre"}
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def check_region(name: str, where: Optional[str]) -> Optional[str]:
    """A region as the prompt holds it: a name (`center` read as `centre`) or a mask image path (an image suffix).
    Anything else is None when `where` is None, else a one-line error naming `where` and the choices."""
    name = ALIASES.get(name, name)
    if name in REGIONS or name.lower().endswith(MASK_SUFFIXES):
        return name
    if where is None:
        return None
    close = difflib.get_close_matches(name, [*REGIONS, *ALIASES], n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise VqclipError(f"{where}: unknown region {shown(name)}; {hint}use {', '.join(REGIONS)} or a mask image "
                      f"({', '.join(MASK_SUFFIXES[:3])}, ...); an '@' followed by a space stays in the text")


def _shares(lo: float, hi: float, n: int) -> np.ndarray:
    """Per pixel [k, k+1) of an axis of n pixels, the length of its overlap with [lo*n, hi*n): [n] in [0,1]."""
    k = np.arange(n, dtype=np.float64)
    return np.clip(np.minimum(k + 1, hi * n) - np.maximum(k, lo * n), 0, 1)


def named_mask(name: str, width: int, height: int) -> np.ndarray:
    """The mask [H,W] (float64 in [0,1]) of a named region: each pixel's share of area inside it."""
    name = ALIASES.get(name, name)
    if name == "border":
        return 1 - named_mask("centre", width, height)
    x0, y0, x1, y1 = BOXES[name]
    return _shares(y0, y1, height)[:, None] * _shares(x0, x1, width)[None, :]


def read_mask(path: str, width: Optional[int] = None, height: Optional[int] = None) -> np.ndarray:
    """A mask image as [H,W] float64 in [0,1] (grey levels / 255; white = inside), resized to width x height when
    given (bilinear, with a notice). Not an image, or nothing inside (all black): a one-line error."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise VqclipError(f"region mask {shown_path(path)}: no such file; check the path")
    try:
        with Image.open(path) as im:
            grey = im.convert("L")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VqclipError(f"region mask {shown_path(path)} is not an image ({type(e).__name__}); give a PNG or JPEG "
                          "(white = where the prompt pulls)") from None
    if width is not None and height is not None and grey.size != (width, height):
        log.info("region mask %s (%dx%d) resized to the image's %dx%d", path, *grey.size, width, height)
        grey = grey.resize((width, height), Image.Resampling.BILINEAR)
    mask = np.asarray(grey, dtype=np.float64) / 255
    if not mask.any():
        raise VqclipError(f"region mask {shown_path(path)} is all black: the prompt would pull nowhere; paint where it "
                          "applies in white")
    return mask


def region_mask(region: str, width: int, height: int) -> np.ndarray:
    """The mask [H,W] (float64 in [0,1]) of a prompt's region, a name or a mask image path, on a width x height
    canvas."""
    name = ALIASES.get(region, region)
    return named_mask(name, width, height) if name in REGIONS else read_mask(region, width, height)
