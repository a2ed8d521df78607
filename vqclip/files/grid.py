"""Contact sheets: a batch's images in one PNG, rows and columns labelled with the values they differ in (PIL's
default font), written atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_path

PAD = 3  # pixels around a label
MAX_ROW_LABEL = 160  # the widest the row labels' margin grows; longer labels are cut
BACKGROUND, INK, EMPTY = (255, 255, 255), (0, 0, 0), (200, 200, 200)


@dataclass(frozen=True)
class Layout:
    """Where a sheet's parts are: the row labels' margin on the left, the title and column labels' band on top, and
    cells of tile size (the largest image) plus a caption band under each tile when tiles have captions (and then as
    wide as the widest caption, up to MAX_ROW_LABEL)."""

    left: int
    top: int
    tile_w: int
    tile_h: int
    caption: int
    rows: int
    cols: int
    cell_w: int = 0  # 0: the tile's width

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The tile's (left, upper, right, lower) in the sheet."""
        x, y = self.left + col * (self.cell_w or self.tile_w), self.top + row * (self.tile_h + self.caption)
        return x, y, x + self.tile_w, y + self.tile_h

    @property
    def size(self) -> tuple[int, int]:
        return (self.left + self.cols * (self.cell_w or self.tile_w),
                self.top + self.rows * (self.tile_h + self.caption))


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """`text`, cut with '...' to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..." if text else ""


def contact_sheet(tiles: list[list[Optional[Image.Image]]], row_labels: Optional[list[str]] = None,
                  col_labels: Optional[list[str]] = None, captions: Optional[dict[tuple[int, int], str]] = None,
                  title: str = "") -> tuple[Image.Image, Layout]:
    """The images `tiles[row][col]` (None: a grey cell, e.g. a run not made) pasted at the top-left of equal cells,
    with a label left of each row, above each column and under each tile where given, and a title on top."""
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line = int(probe.textbbox((0, 0), "Ag=|", font=font)[3]) + 2 * PAD
    images = [im for row in tiles for im in row if im is not None]
    tile_w = max((im.width for im in images), default=32)
    tile_h = max((im.height for im in images), default=32)
    left = 0
    if row_labels and any(row_labels):
        left = min(MAX_ROW_LABEL, max(int(probe.textlength(t, font=font)) for t in row_labels) + 2 * PAD)
    top = (line if title else 0) + (line if col_labels and any(col_labels) else 0)
    cell_w = tile_w
    if captions:
        cell_w = max(tile_w, min(MAX_ROW_LABEL, max(int(probe.textlength(t, font=font)) for t in captions.values())
                                 + 2 * PAD))
    layout = Layout(left, top, tile_w, tile_h, line if captions else 0, len(tiles), max(map(len, tiles), default=0),
                    cell_w)
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((PAD, PAD), _fit(draw, title, font, sheet.width - 2 * PAD), fill=INK, font=font)
    for r, row in enumerate(tiles):
        for c, im in enumerate(row):
            x, y, right, lower = layout.box(r, c)
            if im is None:
                draw.rectangle((x, y, right - 1, lower - 1), fill=EMPTY)
            else:
                sheet.paste(im.convert("RGB"), (x, y))
            if captions and (r, c) in captions:
                draw.text((x + PAD, lower + PAD), _fit(draw, captions[r, c], font, cell_w - 2 * PAD), fill=INK,
                          font=font)
        if left:
            y = layout.box(r, 0)[1]
            draw.text((PAD, y + PAD), _fit(draw, row_labels[r], font, left - 2 * PAD), fill=INK, font=font)
    for c, text in enumerate(col_labels or []):
        x = layout.box(0, c)[0]
        draw.text((x + PAD, top - line + PAD), _fit(draw, text, font, tile_w - 2 * PAD), fill=INK, font=font)
    return sheet, layout


def write_sheet(path: Path, sheet: Image.Image) -> Path:
    """Save a contact sheet as PNG, atomically."""
    with atomic_path(Path(path)) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)
