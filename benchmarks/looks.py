"""Do the looks do what they say? palette, symmetry and tile measured on final.png of `mini` runs, with and without.

Each look runs `vqclip generate --model mini` (in-process, the command's own code path) on a fixed set of prompts x
seeds, once without the look and once with it, and measures final.png (8-bit RGB, read back from the file):
- palette: the mean distance of each pixel (RGB in [0,1]) to its nearest palette colour, without / with the soft term
  (target: at least 5x lower), and the share of pixels exactly a palette colour with `palette.hard` (target: 1);
- symmetry: the mean |image - its mirror image| along x (target: below 0.02 at a high weight);
- tile: the mean difference across the wrap (last column vs first, last row vs first) against that of the
  neighbouring columns/rows beside it, inside (target: ratio at most 1).

    python benchmarks/looks.py                       # 4 prompts x seeds 0, 1, 60 steps
    python benchmarks/looks.py --limit 1 --seeds 0   # a quick look
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor

from vqclip.cli import main as vqclip_main

PROMPTS = ["a red circle on a blue background", "a yellow square on a green background",
           "a white triangle on a black background", "an orange circle on a purple background"]
PALETTE = ["#dc1e1e", "#2846e6", "#f5e128", "#1eaa32", "#f5f5f5", "#0f0f0f"]  # the mini world's red, blue, yellow,
# green, white and black (vqclip/mini/world.py): the colours of the prompts, which mini draws only roughly
LOOKS = {  # name -> (options without, options with)
    "palette": ([], ["--palette", ",".join(PALETTE), "--set", "palette.weight=20"]),
    "palette_hard": ([], ["--palette", ",".join(PALETTE), "--palette-hard"]),
    "symmetry": ([], ["--symmetry", "x", "--set", "symmetry.weight=20"]),
    "tile": ([], ["--tile"]),
}


def pixels(path: Path) -> np.ndarray:
    """final.png as float RGB [H,W,3] in [0,1]."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255


def palette_distance(image: np.ndarray, colors: list[str]) -> float:
    """Mean Euclidean distance of each pixel [H,W,3] to its nearest colour of `colors`."""
    pal = np.array([ImageColor.getrgb(c)[:3] for c in colors], dtype=np.float64) / 255
    return float(np.linalg.norm(image[:, :, None, :] - pal[None, None], axis=-1).min(-1).mean())


def palette_share(image: np.ndarray, colors: list[str]) -> float:
    """The share of pixels exactly one of `colors` (8-bit)."""
    pal = np.array([ImageColor.getrgb(c)[:3] for c in colors])
    rgb = np.rint(image * 255).astype(int)
    return float((rgb[:, :, None, :] == pal[None, None]).all(-1).any(-1).mean())


def mirror_difference(image: np.ndarray) -> float:
    """Mean |image - its left-right mirror image|."""
    return float(np.abs(image - image[:, ::-1]).mean())


def wrap_ratio(image: np.ndarray) -> float:
    """The mean difference across the wrap (last column vs first, last row vs first) over that of the neighbouring
    column and row pairs on either side of it (the last two, the first two): about 1 where the image runs on across
    the wrap as it runs inside, more at a seam."""
    def ratio(a: np.ndarray) -> float:  # along axis 0
        d = lambda i, j: np.abs(a[i] - a[j]).mean()  # noqa: E731
        return d(-1, 0) / max((d(-2, -1) + d(0, 1)) / 2, 1e-12)
    return float((ratio(image) + ratio(image.transpose(1, 0, 2))) / 2)


def measure(look: str, image: np.ndarray) -> float:
    """The figure of `look` on one final image."""
    if look == "palette":
        return palette_distance(image, PALETTE)
    if look == "palette_hard":
        return palette_share(image, PALETTE)
    return mirror_difference(image) if look == "symmetry" else wrap_ratio(image)


def run(looks: list[str], prompts: list[str], seeds: list[int], steps: int, out: Path, extra: list[str]) -> dict:
    """Per look: the figure of each prompt x seed without and with it, and their means."""
    result = {}
    for look in looks:
        rows = {"without": [], "with": []}
        for i, prompt in enumerate(prompts):
            for seed in seeds:
                for arm, opts in zip(("without", "with"), LOOKS[look]):
                    folder = out / f"{look}-{arm}-{i}-{seed}"
                    argv = ["generate", prompt, "--model", "mini", "--steps", str(steps), "--seed", str(seed),
                            "--threads", "1", "--quiet", "--no-video", "--save-every", "0", "--out", str(folder),
                            *opts, *extra]
                    if vqclip_main(argv) != 0:
                        raise SystemExit(f"vqclip failed: {' '.join(argv)}")
                    rows[arm].append(measure(look, pixels(folder / "final.png")))
        result[look] = {arm: {"mean": float(np.mean(v)), "each": v} for arm, v in rows.items()}
        print(f"{look:<13} without {result[look]['without']['mean']:.4f}  with {result[look]['with']['mean']:.4f}",
              flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--looks", nargs="+", default=list(LOOKS), choices=list(LOOKS))
    p.add_argument("--limit", type=int, default=len(PROMPTS), help="the first N prompts")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("extra", nargs="*", help="after --: more `vqclip generate` options for every run")
    args = p.parse_args(argv)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.looks, PROMPTS[:args.limit], args.seeds, args.steps, Path(tmp), args.extra)
    print(f"{time.time() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
