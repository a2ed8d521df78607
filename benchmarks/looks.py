"""Do the looks do what they say? palette, symmetry and tile measured on final.png of `mini` runs, with and without.

Each look runs `vqclip generate --model mini` (in-process, the command's own code path) on a fixed set of prompts x
seeds, once without the look and once with it, and measures final.png (8-bit RGB, read back from the file):
- palette: the mean distance of each pixel (RGB in [0,1]) to its nearest palette colour, without / with the soft term
  (target: at least 5x lower), and the share of pixels exactly a palette colour with `palette.hard` (target: 1);
- symmetry: the mean |image - its mirror image| along x (target: below 0.02 at a high weight);
- tile: the mean difference across the wrap (last column vs first, last row vs first) against that across the
  nearest cell boundaries inside (the VQGAN's 8-px token boundaries on mini), like with like (target: ratio at
  most 1); also the earlier ratio against the pairs beside the wrap, and the difference per phase of the cell.

Each figure is the mean over the images with a 95% interval (mean +- 1.96 standard errors).

    python benchmarks/looks.py                       # 4 prompts x seeds 0, 1, 60 steps
    python benchmarks/looks.py --limit 1 --seeds 0   # a quick look
    python benchmarks/looks.py --floor               # the palette distance mini's VQGAN can reach at all
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


def step_differences(a: np.ndarray) -> np.ndarray:
    """d[c]: the mean |a[c+1] - a[c]| of neighbouring rows of image a [H,W,3] along axis 0, around the wrap (d[H-1]:
    the last row against the first)."""
    return np.abs(np.roll(a, -1, axis=0) - a).mean(axis=(1, 2))


def wrap_ratio(image: np.ndarray, cell: int = 8) -> float:
    """The mean difference across the wrap (last column vs first, last row vs first) over that at the nearest cell
    boundaries inside, `cell` px either side of it (the drawer's cell: a VQGAN's downsampling factor): 1 where the
    image runs on across the wrap as across any cell boundary, more at a seam. With a circular decoder the wrap is a
    cell boundary, so it is compared with boundaries, not with pairs inside a cell (their differences differ)."""
    def ratio(a: np.ndarray) -> float:  # along axis 0
        d = step_differences(a)
        return d[-1] / max((d[-1 - cell] + d[cell - 1]) / 2, 1e-12)
    return float((ratio(image) + ratio(image.transpose(1, 0, 2))) / 2)


def beside_ratio(image: np.ndarray) -> float:
    """The earlier measure: the wrap's difference over that of the pairs beside it (the last two rows, the first two),
    which lie inside a cell and so are not like with like."""
    def ratio(a: np.ndarray) -> float:
        d = step_differences(a)
        return d[-1] / max((d[-2] + d[0]) / 2, 1e-12)
    return float((ratio(image) + ratio(image.transpose(1, 0, 2))) / 2)


def phase_profile(image: np.ndarray, cell: int = 8) -> list[float]:
    """The mean neighbour difference at each phase (c mod `cell`; phase cell-1: across a cell boundary) over both
    axes, the wrap left out: how much the boundary phase differs from the pairs inside a cell."""
    rows = [step_differences(a)[:-1] for a in (image, image.transpose(1, 0, 2))]
    return [float(np.mean([r[p::cell].mean() for r in rows])) for p in range(cell)]


def measure(look: str, image: np.ndarray, cell: int) -> float:
    """The figure of `look` on one final image."""
    if look == "palette":
        return palette_distance(image, PALETTE)
    if look == "palette_hard":
        return palette_share(image, PALETTE)
    return mirror_difference(image) if look == "symmetry" else wrap_ratio(image, cell)


def vqgan_floor(scenes: int = 4, steps: int = 150) -> dict:
    """What mini's VQGAN can draw of the palette at all, on mini-world scenes in palette colours: the mean distance
    (8-bit) of its reconstruction (encode, nearest codes, decode) and after `steps` of the palette term alone (no
    prompt; Adam, lr 0.1, the latents kept in the codebook's box, as a run) from there."""
    import torch

    from vqclip.draw.vqgan import decode_image
    from vqclip.mini import WEIGHTS_DIR, world
    from vqclip.nets.vqgan import load_vqgan
    from vqclip.terms.palette import palette_loss

    torch.set_num_threads(1)
    vq = load_vqgan(WEIGHTS_DIR / "vqgan.yaml", WEIGHTS_DIR / "vqgan.safetensors")
    pal = torch.tensor([ImageColor.getrgb(c) for c in PALETTE], dtype=torch.float32) / 255
    lo, hi = vq.codebook.min(0).values.view(1, -1, 1, 1), vq.codebook.max(0).values.view(1, -1, 1, 1)
    ours = {n for n, c in world.COLORS.items() if "#%02x%02x%02x" % c in PALETTE}
    rng, rows = np.random.default_rng(0), {"reconstruction": [], "palette_alone": []}
    to_8bit = lambda t: t.detach()[0].permute(1, 2, 0).mul(255).round().div(255).double().numpy()  # noqa: E731
    while len(rows["reconstruction"]) < scenes:
        scene = world.sample_scene(rng)
        if {scene.background, scene.shapes[0].color} <= ours:
            image = torch.from_numpy(world.render(scene)).permute(2, 0, 1)[None].float() / 255
            z = vq.encode(image).detach().requires_grad_(True)
            rows["reconstruction"].append(palette_distance(to_8bit(decode_image(vq, z)), PALETTE))
            opt = torch.optim.Adam([z], lr=0.1)
            for _ in range(steps):
                opt.zero_grad()
                palette_loss(decode_image(vq, z), pal).backward()
                opt.step()
                with torch.no_grad():
                    z.copy_(z.maximum(lo).minimum(hi))
            rows["palette_alone"].append(palette_distance(to_8bit(decode_image(vq, z)), PALETTE))
    return {k: summary(v) for k, v in rows.items()}


def summary(values: list[float]) -> dict:
    """The mean of per-image figures, with a 95% interval for it (mean +- 1.96 standard errors; 0 wide for one)."""
    v = np.asarray(values, dtype=np.float64)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "low": float(v.mean() - half), "high": float(v.mean() + half),
            "each": [float(x) for x in v]}


def run(looks: list[str], prompts: list[str], seeds: list[int], steps: int, out: Path, extra: list[str],
        cell: int = 8) -> dict:
    """Per look: the figure of each prompt x seed without and with it, their means and intervals (tile: also the
    earlier beside-the-wrap ratio and the neighbour difference per phase of the cell)."""
    result = {}
    for look in looks:
        rows = {"without": [], "with": []}
        extras = {"without": {"beside": [], "phases": []}, "with": {"beside": [], "phases": []}}
        for i, prompt in enumerate(prompts):
            for seed in seeds:
                for arm, opts in zip(("without", "with"), LOOKS[look]):
                    folder = out / f"{look}-{arm}-{i}-{seed}"
                    argv = ["generate", prompt, "--model", "mini", "--steps", str(steps), "--seed", str(seed),
                            "--threads", "1", "--quiet", "--no-video", "--save-every", "0", "--out", str(folder),
                            *opts, *extra]
                    if vqclip_main(argv) != 0:
                        raise SystemExit(f"vqclip failed: {' '.join(argv)}")
                    image = pixels(folder / "final.png")
                    rows[arm].append(measure(look, image, cell))
                    if look == "tile":
                        extras[arm]["beside"].append(beside_ratio(image))
                        extras[arm]["phases"].append(phase_profile(image, cell))
        result[look] = {arm: summary(v) for arm, v in rows.items()}
        if look == "tile":
            for arm, e in extras.items():
                result[look][arm]["beside"] = summary(e["beside"])
                result[look][arm]["phases"] = np.mean(e["phases"], axis=0).round(5).tolist()
        w, t = result[look]["without"], result[look]["with"]
        print(f"{look:<13} without {w['mean']:.4f} [{w['low']:.4f}, {w['high']:.4f}]  "
              f"with {t['mean']:.4f} [{t['low']:.4f}, {t['high']:.4f}]", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--looks", nargs="+", default=list(LOOKS), choices=list(LOOKS))
    p.add_argument("--limit", type=int, default=len(PROMPTS), help="the first N prompts")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--cell", type=int, default=8, help="the drawer's cell in px, where tile compares the wrap with "
                                                       "the cell boundaries (mini's VQGAN: 8; pixel: pixel_size)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--floor", action="store_true", help="only measure what mini's VQGAN can draw of the palette")
    p.add_argument("--keep", type=Path, default=None, help="keep the runs' folders here (default: a temporary one)")
    p.add_argument("extra", nargs="*", help="after --: more `vqclip generate` options for every run")
    args = p.parse_args(argv)
    start = time.time()
    if args.floor:
        result = vqgan_floor()
        for k, v in result.items():
            print(f"floor {k:<15} {v['mean']:.4f} [{v['low']:.4f}, {v['high']:.4f}]")
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        result = run(args.looks, PROMPTS[:args.limit], args.seeds, args.steps, out, args.extra, args.cell)
    print(f"{time.time() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
