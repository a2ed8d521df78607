"""The mini world: 64x64 scenes of one filled shape on a flat background, with captions from a small grammar.

Grammar (what users may prompt the ``mini`` preset with)::

    caption    := "a" COLOR SHAPE [ "on" ["a"] COLOR ["background"] ]
    COLOR      := red | green | blue | yellow | purple | orange | white | black
    SHAPE      := circle | square | triangle

e.g. "a red circle on a blue background", "a blue triangle", "a yellow square on black". The shape colour and
the background colour always differ. Training also uses *negative* scenes that are never the answer to a prompt:
"two red circles on a blue background" (2-4 copies), "red fragments on a blue background" (scattered small
pieces), "a red blob on a blue background" (one irregular blob) and "a red circle on a blue background with
clutter" (stray blobs of other colours); they teach the mini CLIP that a prompt means exactly one clean shape.

Everything is deterministic given a seed (``numpy.random.Generator``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vqclip.errors import VqclipError

#: named colours, sRGB 0-255; the judge classifies pixels by the nearest of these
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 70, 230),
    "yellow": (245, 225, 40),
    "purple": (140, 50, 180),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COUNT_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
SIZE = 64

_BG_TEMPLATES = ("{ac} {c} {s} on {ab} {b} background", "{ac} {c} {s} on {b}", "{ac} {c} {s} on {ab} {b} background")


def _a(word: str) -> str:
    """The indefinite article for a word ('an orange', 'a red')."""
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class Shape:
    """One filled shape: kind, colour name, centre (x, y) and half-extent r, in pixels."""

    kind: str
    color: str
    cx: float
    cy: float
    r: float


@dataclass(frozen=True)
class Scene:
    """A background colour and its shapes; ``count`` is 1 for a proper scene, >1 for copies, 0 for fragments."""

    background: str
    shapes: tuple[Shape, ...]
    count: int = 1
    clutter: bool = False  # shapes[1:] are stray blobs of other colours around the one shape
    blob: bool = False  # the shapes overlap into one irregular blob ("a red blob")


@dataclass(frozen=True)
class Attributes:
    """What a caption asserts: shape colour, shape kind (None for fragments), background (None if unsaid), count."""

    color: str
    shape: str | None
    background: str | None
    count: int = 1
    clutter: bool = False


def other_color(rng: np.random.Generator, exclude: str, colors: dict | None = None) -> str:
    """A colour name of `colors` (default COLORS) other than `exclude`, drawn at random."""
    names = [c for c in (COLORS if colors is None else colors) if c != exclude]
    return names[int(rng.integers(len(names)))]


def sample_scene(rng: np.random.Generator, size: int = SIZE, colors: dict | None = None) -> Scene:
    """A proper scene: one shape of half-extent 9-22 px (at 64 px), fully inside the canvas; its two colours drawn
    from `colors` (default COLORS; a variant world with a colour more: `with_color`)."""
    colors = COLORS if colors is None else colors
    kind = SHAPES[int(rng.integers(len(SHAPES)))]
    color = list(colors)[int(rng.integers(len(colors)))]
    bg = other_color(rng, color, colors)
    return Scene(bg, (_placed(rng, kind, color, size),), 1)


def _placed(rng: np.random.Generator, kind: str, color: str, size: int = SIZE) -> Shape:
    """One shape of half-extent 9-22 px (at 64 px) at a random place fully inside the canvas."""
    r = float(rng.uniform(9, 22)) * size / SIZE
    cx, cy = (float(rng.uniform(r + 1, size - r - 1)) for _ in range(2))
    return Shape(kind, color, cx, cy, r)


def scene_for(attrs: Attributes, rng: np.random.Generator, size: int = SIZE) -> Scene:
    """A proper scene showing a proper caption's attributes (`parse_caption`), its shape sized and placed at random."""
    if attrs.shape not in SHAPES or attrs.background is None or attrs.count != 1 or attrs.clutter:
        raise VqclipError(f"no proper scene for {attrs}: it needs one shape kind and a background")
    return Scene(attrs.background, (_placed(rng, attrs.shape, attrs.color, size),), 1)


def sample_negative(rng: np.random.Generator, size: int = SIZE) -> Scene:
    """A training-only negative: 2-4 separate copies of one shape, or 4-9 scattered fragments of one colour."""
    color = list(COLORS)[int(rng.integers(len(COLORS)))]
    bg = other_color(rng, color)
    s = size / SIZE
    if rng.random() < 0.5:
        kind = SHAPES[int(rng.integers(len(SHAPES)))]
        n = int(rng.integers(2, 5))
        shapes = _place_apart(rng, n, lambda: float(rng.uniform(5, 13)) * s, size, kind, color)
        return Scene(bg, shapes, n)
    n = int(rng.integers(4, 10))
    shapes = _place_apart(rng, n, lambda: float(rng.uniform(2.5, 7)) * s, size, None, color)
    return Scene(bg, shapes, 0)


def sample_clutter(rng: np.random.Generator, size: int = SIZE) -> Scene:
    """A training-only negative: a proper scene plus 2-6 small stray blobs of other colours ("... with clutter")."""
    sc = sample_scene(rng, size)
    s = size / SIZE
    others = [c for c in COLORS if c != sc.background]
    blobs = []
    for _ in range(int(rng.integers(2, 7))):
        r = float(rng.uniform(2.5, 8)) * s
        cx, cy = (float(rng.uniform(r, size - r)) for _ in range(2))
        blobs.append(Shape(SHAPES[int(rng.integers(len(SHAPES)))], others[int(rng.integers(len(others)))], cx, cy, r))
    return Scene(sc.background, (*sc.shapes, *blobs), 1, True)


def sample_blob(rng: np.random.Generator, size: int = SIZE) -> Scene:
    """A training-only negative: one irregular blob (2-4 overlapping shapes of one colour), "a red blob on ..."."""
    color = list(COLORS)[int(rng.integers(len(COLORS)))]
    bg = other_color(rng, color)
    s = size / SIZE
    cx, cy = (float(rng.uniform(20, 44)) * s for _ in range(2))
    parts = []
    r0 = float(rng.uniform(7, 12)) * s
    for _ in range(int(rng.integers(2, 5))):
        r = r0 * float(rng.uniform(0.75, 1.25))  # parts of similar size, so no single part dominates
        ang, dist = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.6, 1.1)) * r
        px = float(np.clip(cx + dist * np.cos(ang), r, size - r))
        py = float(np.clip(cy + dist * np.sin(ang), r, size - r))
        parts.append(Shape(SHAPES[int(rng.integers(len(SHAPES)))], color, px, py, r))
        cx, cy = px, py
    return Scene(bg, tuple(parts), 1, False, True)


def _place_apart(rng, n, radius, size, kind, color) -> tuple[Shape, ...]:
    """Place n shapes that do not touch (rejection sampling; gives up on overlap after a few tries)."""
    out: list[Shape] = []
    for _ in range(n):
        for _try in range(30):
            r = radius()
            cx, cy = (float(rng.uniform(r + 1, size - r - 1)) for _ in range(2))
            if all((cx - o.cx) ** 2 + (cy - o.cy) ** 2 > (r + o.r + 3) ** 2 for o in out):
                break
        k = kind if kind is not None else SHAPES[int(rng.integers(len(SHAPES)))]
        out.append(Shape(k, color, cx, cy, r))
    return tuple(out)


def pixel_centres(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) float32 [height,width] coordinates of pixel centres: pixel (i, j) covers [j, j+1) x [i, i+1)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return y + 0.5, x + 0.5


def inside(kind: str, dx: np.ndarray, dy: np.ndarray, r) -> np.ndarray:
    """Bool array: do points at offsets (dx, dy) from a centre lie in a `kind` of half-extent r (all broadcast)?
    Triangles point up (isosceles, base 2r at the bottom, apex at the top); squares are upright."""
    if kind == "circle":
        return dx * dx + dy * dy <= r * r
    if kind == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if kind == "triangle":
        return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)
    raise VqclipError(f"unknown shape kind {kind!r}; use one of {', '.join(SHAPES)}")


def shape_mask(shape: Shape, size: int = SIZE) -> np.ndarray:
    """Boolean [size,size] mask of one shape (pixel centres inside it)."""
    y, x = pixel_centres(size, size)
    return inside(shape.kind, x - shape.cx, y - shape.cy, shape.r)


def with_color(name: str, rgb: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
    """A palette of the shipped colours and one more (a variant world for fine-tuning; COLORS itself unchanged)."""
    if name in COLORS or not re.fullmatch(r"[a-z]+", name):
        raise VqclipError(f"colour {name!r}: give a new lowercase word, not one of {', '.join(COLORS)}")
    return {**COLORS, name: tuple(int(v) for v in rgb)}


def render(scene: Scene, size: int = SIZE, colors: dict | None = None) -> np.ndarray:
    """The scene as uint8 [size,size,3] RGB, its colour names looked up in `colors` (default COLORS)."""
    colors = COLORS if colors is None else colors
    img = np.empty((size, size, 3), np.uint8)
    img[:] = colors[scene.background]
    for sh in (*scene.shapes[1:], scene.shapes[0]) if scene.clutter else scene.shapes:  # clutter never hides the shape
        img[shape_mask(sh, size)] = colors[sh.color]
    return img


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption for the scene from the grammar; proper scenes say the background 5 times in 6."""
    first = scene.shapes[0]
    if scene.count == 0:
        return f"{first.color} fragments on {_a(scene.background)} {scene.background} background"
    if scene.count > 1:
        return (f"{COUNT_WORDS[scene.count]} {first.color} {first.kind}s on {_a(scene.background)} "
                f"{scene.background} background")
    if scene.blob:
        return f"{_a(first.color)} {first.color} blob on {_a(scene.background)} {scene.background} background"
    if scene.clutter:
        return (f"{_a(first.color)} {first.color} {first.kind} on {_a(scene.background)} {scene.background} "
                "background with clutter")
    t = int(rng.integers(6))
    if t == 5:
        return f"{_a(first.color)} {first.color} {first.kind}"
    return _BG_TEMPLATES[t % 3].format(ac=_a(first.color), c=first.color, s=first.kind,
                                       ab=_a(scene.background), b=scene.background)


def attributes(scene: Scene) -> Attributes:
    """The attributes a scene shows (background always known)."""
    first = scene.shapes[0]
    kind = "blob" if scene.blob else None if scene.count == 0 else first.kind
    return Attributes(first.color, kind, scene.background, scene.count, scene.clutter)


_C = "|".join(COLORS)
_S = "|".join((*SHAPES, "blob"))
_N = "|".join(COUNT_WORDS.values())
_BG = rf"(?:\s+on\s+(?:an?\s+)?(?P<bg>{_C})(?:\s+background)?)?"
_ONE = re.compile(rf"^an?\s+(?P<c>{_C})\s+(?P<s>{_S}){_BG}(?P<clutter>\s+with\s+clutter)?$")
_MANY = re.compile(rf"^(?P<n>{_N})\s+(?P<c>{_C})\s+(?P<s>{_S})s{_BG}$")
_FRAG = re.compile(rf"^(?P<c>{_C})\s+fragments{_BG}$")


def parse_caption(text: str) -> Attributes:
    """Attributes of a caption in the grammar (case and extra spaces ignored); VqclipError if it is not one."""
    if not isinstance(text, str):
        raise VqclipError(f"caption must be a string, got {type(text).__name__}")
    t = " ".join(text.lower().strip().rstrip(".").split())
    if m := _ONE.match(t):
        a = Attributes(m["c"], m["s"], m["bg"], 1, m["clutter"] is not None)
    elif m := _MANY.match(t):
        n = {v: k for k, v in COUNT_WORDS.items()}[m["n"]]
        a = Attributes(m["c"], m["s"], m["bg"], n)
    elif m := _FRAG.match(t):
        a = Attributes(m["c"], None, m["bg"], 0)
    else:
        raise VqclipError(
            f"caption {text!r} is not in the mini world's grammar; write e.g. 'a red circle on a blue background' "
            f"(colours: {', '.join(COLORS)}; shapes: {', '.join(SHAPES)})")
    if a.background is not None and a.background == a.color:
        raise VqclipError(f"caption {text!r} puts a {a.color} shape on a {a.color} background; pick two colours")
    return a


def sample_any(rng: np.random.Generator, negatives: float = 0.0, clutter: float = 0.0, size: int = SIZE,
               blobs: float = 0.0) -> Scene:
    """A proper scene, or with probability ``negatives`` copies/fragments, ``clutter`` clutter, ``blobs`` a blob."""
    u = rng.random()
    if u < negatives:
        return sample_negative(rng, size)
    if u < negatives + clutter:
        return sample_clutter(rng, size)
    if u < negatives + clutter + blobs:
        return sample_blob(rng, size)
    return sample_scene(rng, size)


def make_dataset(n: int, seed: int, negatives: float = 0.0, size: int = SIZE, clutter: float = 0.0
                 ) -> tuple[np.ndarray, list[str], list[Scene]]:
    """n scenes (shares ``negatives`` and ``clutter`` of them negatives) as uint8 [n,size,size,3], captions, scenes."""
    rng = np.random.default_rng(seed)
    imgs = np.empty((n, size, size, 3), np.uint8)
    caps: list[str] = []
    scenes: list[Scene] = []
    for i in range(n):
        sc = sample_any(rng, negatives, clutter, size)
        imgs[i] = render(sc, size)
        caps.append(caption(sc, rng))
        scenes.append(sc)
    return imgs, caps, scenes


def all_prompts() -> list[str]:
    """Every proper caption with an explicit background, in the canonical form 'a C S on a B background'."""
    return [f"{_a(c)} {c} {s} on {_a(b)} {b} background" for s in SHAPES for c in COLORS for b in COLORS if b != c]
