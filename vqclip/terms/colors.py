"""Palette colours by name (`red`, `#1a2b3c`, `rgb(10,20,30)`: whatever PIL's ImageColor reads), as 8-bit RGB."""

from __future__ import annotations

from PIL import ImageColor

from ..errors import VqclipError, shown


def rgb(color: str, key: str = "palette.colors") -> tuple[int, int, int]:
    """`color` as (r, g, b) in 0..255; a name PIL does not know is a one-line error naming `key`."""
    try:
        return ImageColor.getrgb(str(color).strip())[:3]
    except ValueError:
        raise VqclipError(f"{key}: {shown(color)} is no colour; give a name (red, navy) or #rrggbb") from None
