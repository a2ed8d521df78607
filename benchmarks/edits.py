"""Edits on the `mini` preset, judged in pixel space (vqclip.mini.judge's colour classes), not by CLIP.

Inpaint: a held-out mini scene ("a red circle on a blue background", drawn by vqclip.mini.world from seeds the
training never used), its object's box masked and started from noise (`init.mask_init: noise`), prompted with a new
object colour ("a yellow circle on a blue background"): the share of the new colour among the mask's pixels (and
among the old object's), before (0) and after; the object colour the project's judge finds in the masked area
(cropped with its feather band); and whether every pixel outside the mask's feather band is the original's. Outpaint: the
scene extended from 64x64 to 128x64 (`--extend 0 0 64 0`) with its own caption: the new half's background as the
project's judge finds it on that half alone (the commonest colour of its border), the share of its pixels in the
background's colour, and whether the original half is bit-identical. Runs `vqclip generate --model mini`
in-process (the command's code path).

    python benchmarks/edits.py --threads 1                  # 8 inpaints + 8 outpaints
    python benchmarks/edits.py --cases 4 -- --steps 100     # fewer, with extra `vqclip generate` options

An inpaint counts as right when the judge finds the prompt's object colour in the masked area, an outpaint when
the judge finds the prompt's background on the new half and the original half is unchanged; the aim is >= 80%
right on each.
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
from vqclip.mini.judge import COLOR_NAMES, classify_pixels, judge

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the statistics of mini_quality.py, beside this file
from mini_quality import split_generate_options, wilson  # noqa: E402

AIM = 0.80
FEATHER = 4  # the mask's feather (pixels) in these runs
SCENE_SEEDS = 10_000  # scene seeds from here on: the mini training sets draw theirs far below


def scene(i: int) -> world.Scene:
    """The i-th held-out scene: one shape, half-extent 12-18 px, well inside the canvas."""
    rng = np.random.default_rng(SCENE_SEEDS + i)
    kind = world.SHAPES[i % len(world.SHAPES)]
    color = list(world.COLORS)[int(rng.integers(len(world.COLORS)))]
    bg = world.other_color(rng, color)
    r = float(rng.uniform(12, 18))
    cx, cy = (float(rng.uniform(r + 4, world.SIZE - r - 4)) for _ in range(2))
    return world.Scene(bg, (world.Shape(kind, color, cx, cy, r),), 1)


def share(image: np.ndarray, where: np.ndarray, color: str) -> float:
    """The share of the pixels `where` [H,W] whose nearest named colour is `color`."""
    classes = classify_pixels(image.astype(np.float32))
    return float((classes[where] == COLOR_NAMES.index(color)).mean())


def band(mask: np.ndarray, pixels: int) -> np.ndarray:
    """The mask's non-black pixels widened by `pixels` (chessboard distance): what an edit may change."""
    h, w = mask.shape
    padded = np.pad(mask > 0, pixels)
    out = np.zeros((h, w), bool)
    for dy in range(2 * pixels + 1):
        for dx in range(2 * pixels + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def generate(argv: list[str]) -> float:
    t0 = time.perf_counter()
    if vqclip_main(["generate", *argv, "--model", "mini", "--save-every", "0", "--no-video", "--quiet"]) != 0:
        raise SystemExit(f"vqclip generate failed for {argv}")
    return time.perf_counter() - t0


def inpaint(i: int, seed: int, folder: Path, extra: list[str]) -> dict:
    """Mask the object's box of scene i and prompt another object colour."""
    sc = scene(i)
    shape = sc.shapes[0]
    names = [c for c in world.COLORS if c not in (shape.color, sc.background)]
    new = names[int(np.random.default_rng(SCENE_SEEDS + i).integers(len(names)))]  # neither the object's nor the bg's
    image = world.render(sc)
    mask = np.zeros((world.SIZE, world.SIZE), np.uint8)
    y0, y1 = max(0, int(shape.cy - shape.r) - 1), min(world.SIZE, int(np.ceil(shape.cy + shape.r)) + 1)
    x0, x1 = max(0, int(shape.cx - shape.r) - 1), min(world.SIZE, int(np.ceil(shape.cx + shape.r)) + 1)
    mask[y0:y1, x0:x1] = 255
    Image.fromarray(image).save(folder / f"in{i}.png")
    Image.fromarray(mask).save(folder / f"mask{i}.png")
    prompt = f"{world._a(new)} {new} {shape.kind} on {world._a(sc.background)} {sc.background} background"
    out = folder / f"inpaint{i}-s{seed}"
    seconds = generate([prompt, "--seed", str(seed), "--out", str(out), "--size", "64", "64", "--init-image",
                        str(folder / f"in{i}.png"), "--mask", str(folder / f"mask{i}.png"), "--mask-feather",
                        str(FEATHER), "--set", "init.mask_init=noise", *extra])  # a new object: from noise
    final = np.asarray(Image.open(out / "final.png").convert("RGB"))
    obj, free, inside = world.shape_mask(shape), band(mask, FEATHER), mask > 0
    # the masked area on its own, with the feather band and two pixels more around it: its object's colour, as the
    # project's judge finds it (the commonest colour that is not its border's)
    m = FEATHER + 2
    crop = final[max(0, y0 - m):y1 + m, max(0, x0 - m):x1 + m]
    verdict = judge(crop, prompt)
    row = {"kind": "inpaint", "prompt": prompt, "seed": seed, "seconds": seconds,
           "before": share(image, inside, new), "after": share(final, inside, new),
           "object_after": share(final, obj, new), "found": verdict.found_color,
           "outside_kept": bool((final[~free] == image[~free]).all())}
    row["right"] = bool(verdict.color)
    return row


def outpaint(i: int, seed: int, folder: Path, extra: list[str]) -> dict:
    """Extend scene i to 128x64 with its own caption."""
    sc = scene(i)
    shape = sc.shapes[0]
    image = world.render(sc)
    Image.fromarray(image).save(folder / f"out{i}.png")
    prompt = f"{world._a(shape.color)} {shape.color} {shape.kind} on {world._a(sc.background)} {sc.background} " \
             "background"
    out = folder / f"outpaint{i}-s{seed}"
    seconds = generate([prompt, "--seed", str(seed), "--out", str(out), "--size", "64", "64", "--init-image",
                        str(folder / f"out{i}.png"), "--extend", "0", "0", "64", "0", "--mask-feather", str(FEATHER),
                        *extra])
    final = np.asarray(Image.open(out / "final.png").convert("RGB"))
    half = np.zeros(final.shape[:2], bool)
    half[:, 64:] = True
    verdict = judge(final[:, 64:], prompt)  # the new half on its own, by the project's judge
    row = {"kind": "outpaint", "prompt": prompt, "seed": seed, "seconds": seconds,
           "background": verdict.found_background, "background_share": share(final, half, sc.background),
           "original_kept": bool(final.shape == (64, 128, 3) and (final[:, :64] == image).all())}
    row["right"] = bool(verdict.background) and row["original_kept"]
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the edits; exit 1 when an aim is missed."""
    argv, extra = split_generate_options(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=8, help="scenes of each kind of edit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", nargs="+", default=["inpaint", "outpaint"], choices=["inpaint", "outpaint"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", type=Path, default=None, help="also write the records and summary as JSON")
    p.add_argument("--out", type=Path, default=None, help="keep the images here (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.threads:
        extra = ["--threads", str(args.threads), *extra]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(args.cases):
            for make in [{"inpaint": inpaint, "outpaint": outpaint}[k] for k in args.kinds]:
                row = make(i, args.seed, folder, extra)
                rows.append(row)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    summary = {}
    for kind in args.kinds:
        mine = [r for r in rows if r["kind"] == kind]
        k, n = sum(r["right"] for r in mine), len(mine)
        lo, hi = wilson(k, n)
        kept = all(r.get("outside_kept", r.get("original_kept")) for r in mine)
        summary[kind] = {"right": k, "images": n, "share": k / max(1, n), "kept_exactly": kept,
                         "seconds": sum(r["seconds"] for r in mine) / max(1, n)}
        extra_info = (f"object in the new colour {np.mean([r['before'] for r in mine]):.0%} before, "
                      f"{np.mean([r['after'] for r in mine]):.0%} after" if kind == "inpaint" else
                      f"new half in the background colour {np.mean([r['background_share'] for r in mine]):.0%}")
        print(f"{kind}: {k}/{n} right ({k / max(1, n):.0%}, 95% {lo:.0%}-{hi:.0%}); {extra_info}; outside kept "
              f"bit for bit: {kept}; {summary[kind]['seconds']:.1f} s per image")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "extra_args": extra, "rows": rows}, indent=2))
    ok = all(s["share"] >= AIM and s["kept_exactly"] for s in summary.values())
    print("aims met" if ok else f"aims missed (aim: {AIM:.0%} right on each, outside kept exactly)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
