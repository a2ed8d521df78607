"""A pixel-space judge for the mini world, independent of CLIP: does an image show what its caption says?

Every pixel is classified as the nearest named colour (``world.COLORS``, RGB distance). The background is the
commonest colour on the image border. The caption's shape colour must be present and form *one object*: its largest
8-connected component must hold at least ``ONE_OBJECT_SHARE`` of that colour's pixels, so a colour scattered over
several blobs is judged wrong. The shape kind is the world's template (upright square, circle, upward triangle) that
best matches that component (holes filled): each template is given the component's area and centroid, then nudged
by a little scale, shift and turn (up to 20 degrees, as generation's views turn by up to 15). The match is scored
by the mean boundary displacement, the symmetric difference divided by the template's perimeter, in units of the
component's equivalent radius. The score treats every kind alike (a boundary that wobbles by d pixels scores about
d / radius whatever the kind), and a component that no template fits within ``MAX_DISPLACEMENT`` (an irregular
blob, a long rectangle, an upside-down triangle) has no kind.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vqclip.errors import VqclipError
from vqclip.mini import world

COLOR_NAMES: tuple[str, ...] = tuple(world.COLORS)
_PALETTE = np.array([world.COLORS[c] for c in COLOR_NAMES], np.float32)  # [K,3]
ONE_OBJECT_SHARE = 0.9  # largest component / all pixels of the shape colour
MIN_AREA = 30  # pixels (at 64x64) for a shape to count as present
MAX_DISPLACEMENT = 0.08  # mean boundary displacement / equivalent radius for a template to fit (see `shape_scores`)
# per kind: area, perimeter and centroid offset (below the centre) of the template of half-extent 1 (world.inside)
_TEMPLATES = {"circle": (np.pi, 2 * np.pi, 0.0), "square": (4.0, 8.0, 0.0),
              "triangle": (2.0, 2 + 2 * np.sqrt(5), 1 / 3)}
_SCALES = np.array([0.9, 0.95, 1.0, 1.05, 1.1], np.float32)
_SHIFTS = np.array([-1.0, 0.0, 1.0], np.float32)
_ANGLES = np.deg2rad(np.arange(-20, 21, 5)).astype(np.float32)  # generation turns its views by up to 15 degrees


@dataclass(frozen=True)
class Verdict:
    """The judge's findings and whether each attribute matches the caption (background None if the caption omits it)."""

    color: bool
    background: bool | None
    shape: bool
    found_background: str
    found_color: str | None
    found_shape: str | None
    objects: int
    largest_share: float

    @property
    def all(self) -> bool:
        """True when colour, shape and (if stated) background are all right."""
        return self.color and self.shape and self.background is not False


def to_array(image) -> np.ndarray:
    """PIL image, uint8 [H,W,3] array or tensor [3,H,W]/[1,3,H,W] in [0,1] -> float32 [H,W,3] in 0..255."""
    if hasattr(image, "detach"):  # a torch tensor
        t = image.detach().float().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise VqclipError(f"judge expects an image tensor [3,H,W] in [0,1], got shape {list(t.shape)}")
        return (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.float32)
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise VqclipError(f"judge expects an RGB image [H,W,3], got shape {list(arr.shape)}")
    return arr.astype(np.float32) if arr.dtype == np.uint8 else (np.clip(arr, 0, 1) * 255).astype(np.float32)


def classify_pixels(img: np.ndarray) -> np.ndarray:
    """float [H,W,3] in 0..255 -> int [H,W] index into COLOR_NAMES of each pixel's nearest named colour."""
    d = ((img[:, :, None, :] - _PALETTE[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of a bool [H,W] mask -> (labels [H,W], 0 = outside; areas [n] sorted by label)."""
    h, w = mask.shape
    big = h * w + 1
    lab = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:
        p = np.pad(lab, 1, constant_values=big)
        neigh = np.min(np.stack([p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                                 for dy in (-1, 0, 1) for dx in (-1, 0, 1)]), 0)
        new = np.where(mask, neigh, big)
        if np.array_equal(new, lab):
            break
        lab = new
    ids, inv, areas = np.unique(lab[mask], return_inverse=True, return_counts=True)
    out = np.zeros((h, w), np.int64)
    out[mask] = inv + 1
    return out, areas


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """bool [H,W] mask with every region not connected to the border through non-mask pixels filled in."""
    outside, _ = label_components(~mask)
    border = np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))
    return mask | ~np.isin(outside, border[border > 0])


def shape_scores(mask: np.ndarray) -> dict[str, float]:
    """Per kind, how far one filled object (bool [H,W]) is from that kind's best-fitting template: the mean boundary
    displacement in units of the object's equivalent radius (0 = exact; ~0.08 separates a circle from a square)."""
    ys, xs = np.nonzero(mask)
    area = len(ys)
    mx, my = xs.mean() + 0.5, ys.mean() + 0.5  # in pixel-centre coordinates, as world.pixel_centres
    y, x = world.pixel_centres(*mask.shape)
    grid = np.meshgrid(_SCALES, _SHIFTS, _SHIFTS, _ANGLES, indexing="ij")
    scale, dx, dy, angle = (a.ravel()[:, None, None] for a in grid)
    u, v = x[None] - (mx + dx), y[None] - (my + dy)  # offsets from each candidate centroid, [n,H,W]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * u + sin * v, cos * v - sin * u  # into the frame of a template turned by `angle`
    out = {}
    for kind, (unit_area, unit_perimeter, centroid_dy) in _TEMPLATES.items():
        r = np.sqrt(area / unit_area) * scale
        t = world.inside(kind, u, v + centroid_dy * r, r)  # [n,H,W] candidate templates
        displacement = (t ^ mask[None]).sum((1, 2)) / (unit_perimeter * r[:, 0, 0])
        out[kind] = float(displacement.min() / np.sqrt(area / np.pi))
    return out


def shape_kind(mask: np.ndarray) -> str | None:
    """The kind (circle, square, triangle) of one filled object given as bool [H,W], or None if it is none of them."""
    if mask.sum() < MIN_AREA:
        return None
    scores = shape_scores(mask)
    kind = min(scores, key=scores.get)
    return kind if scores[kind] <= MAX_DISPLACEMENT else None


def judge(image, caption: str) -> Verdict:
    """Judge an image (see `to_array`) against a caption of the mini grammar (see `world.parse_caption`)."""
    want = world.parse_caption(caption)
    cls = classify_pixels(to_array(image))
    border = np.concatenate([cls[:2].ravel(), cls[-2:].ravel(), cls[:, :2].ravel(), cls[:, -2:].ravel()])
    bg = int(np.bincount(border, minlength=len(COLOR_NAMES)).argmax())
    counts = np.bincount(cls.ravel(), minlength=len(COLOR_NAMES))
    counts[bg] = 0
    fg = int(counts.argmax()) if counts.max() >= MIN_AREA else None
    found_color = COLOR_NAMES[fg] if fg is not None else None

    target = COLOR_NAMES.index(want.color)
    mask = (cls == target) if target != bg else np.zeros(cls.shape, bool)
    objects, share, kind = 0, 0.0, None
    if mask.sum() >= MIN_AREA:
        labels, areas = label_components(mask)
        objects = int((areas >= 4).sum())
        share = float(areas.max() / areas.sum())
        if share >= ONE_OBJECT_SHARE:
            kind = shape_kind(fill_holes(labels == int(areas.argmax()) + 1))
    return Verdict(
        color=found_color == want.color,
        background=None if want.background is None else COLOR_NAMES[bg] == want.background,
        shape=kind is not None and kind == want.shape and want.count == 1,
        found_background=COLOR_NAMES[bg], found_color=found_color, found_shape=kind,
        objects=objects, largest_share=share,
    )
