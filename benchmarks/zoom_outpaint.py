"""Zoom-out videos on the `mini` preset: what fills the border a move uncovers, judged in pixel space.

Each held-out scene of benchmarks/edits.py (one shape on a background, 64x64) is the init image of a zoom video that
zooms out (by default `--zoom 0.85`, a move every 20 steps, 4 frames), prompted with its own caption, once per fill:
`reflection` (today's default), `outpaint` with init.mask_init keep (noise) and `outpaint` with blur. Reported: the
share of the last move's border (outside the centre box of final.png the zoom keeps covered) in the background's
colour and in the object's colour (a mirrored copy of the object shows there), averaged over the scenes.

    python benchmarks/zoom_outpaint.py --threads 1                        # 20 steps per move, zoom 0.85
    python benchmarks/zoom_outpaint.py --threads 1 --zoom 0.7 --every 10  # a faster zoom
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vqclip.cli import main as vqclip_main
from vqclip.mini import world

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scenes of edits.py, beside this file
from edits import scene, share  # noqa: E402

FILLS = {"reflection": ["--padding", "reflection"], "outpaint-noise": ["--padding", "outpaint"],
         "outpaint-blur": ["--padding", "outpaint", "--set", "init.mask_init=blur"]}


def border(size: int, zoom: float) -> np.ndarray:
    """[H,W] bool: outside the centre box a move by `zoom` (< 1) keeps covered."""
    inner = int(round(size * (1 - zoom) / 2))
    out = np.ones((size, size), bool)
    out[inner:size - inner, inner:size - inner] = False
    return out


def zoom_out(i: int, fill: str, seed: int, folder: Path, extra: list[str], zoom: float, every: int) -> dict:
    """Scene i zoomed out with one fill: the border's shares of the background's and the object's colours."""
    sc = scene(i)
    shape = sc.shapes[0]
    Image.fromarray(world.render(sc)).save(folder / f"in{i}.png")
    prompt = f"{world._a(shape.color)} {shape.color} {shape.kind} on {world._a(sc.background)} {sc.background} " \
             "background"
    out = folder / f"zoom{i}-{fill}-s{seed}"
    t0 = time.perf_counter()
    if vqclip_main(["zoom", prompt, "--model", "mini", "--seed", str(seed), "--out", str(out), "--size", "64", "64",
                    "--init-image", str(folder / f"in{i}.png"), "--zoom", str(zoom), "--every", str(every),
                    "--frames", "4", "--no-video", "--quiet", *FILLS[fill], *extra]) != 0:
        raise SystemExit(f"vqclip zoom failed for scene {i}, {fill}")
    final = np.asarray(Image.open(out / "final.png").convert("RGB"))
    where = border(final.shape[0], zoom)
    return {"scene": i, "fill": fill, "prompt": prompt, "seconds": time.perf_counter() - t0,
            "background": share(final, where, sc.background), "object": share(final, where, shape.color)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zoom", type=float, default=0.85, help="scale per move (< 1: out)")
    p.add_argument("--every", type=int, default=20, help="steps per move")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    extra = ["--threads", str(args.threads)] if args.threads else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.cases):
            for fill in FILLS:
                rows.append(zoom_out(i, fill, args.seed, Path(tmp), extra, args.zoom, args.every))
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}),
                      flush=True)
    for fill in FILLS:
        mine = [r for r in rows if r["fill"] == fill]
        print(f"{fill}: border in the background colour {np.mean([r['background'] for r in mine]):.0%}, in the "
              f"object's {np.mean([r['object'] for r in mine]):.0%} ({len(mine)} scenes)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
