"""Does a guide that knows rings let a preset of your own draw one? The mini preset's guide (a small CNN, see
vqclip/mini/train/guide.py) tells circles, squares and triangles from near misses and pulls generation towards the
shape a prompt names; it knows no ring. This trains the same guide with a fifth label, "ring" (train_vqgan.py's rings,
a fifth of each batch), broken rings (ring_preset.py's) among the near misses, seen through the ring VQGAN; then
generates ring_preset.py's 12 ring prompts with a preset (`--model`) and this guide, and judges them with its judge.

    python benchmarks/ring_guide.py --vqgan RUNV --model RUNC/clip [--ring-width 5] [-- --set guide.weight=0.5]
    python benchmarks/ring_guide.py --guide OUT/guide --model RUNC/clip    # a guide trained before: generate only
    python benchmarks/ring_guide.py --guide OUT/guide --model RUNC/clip --rounds 2 --out R   # refined, then judged
    python benchmarks/ring_guide.py --vqgan RUNV --model RUNC/clip --hard-misses   # near misses one gap short, tailed

`--rounds N` refines the guide N times against its own generator, as a GAN's discriminator learns from its generator:
each round generates the 44 ring prompts the judge never sees with the preset and the latest guide (seed 100 + round),
then fine-tunes that guide for `--refine-steps` with every round's images so far (final image and the frames of the
second half) as near misses; the judged prompts are generated with the last guide (R/guide1, R/guide2, ...).

Prints one JSON object: the guide's held-out accuracy per label (each round's too, with the share of held-out
generator images it calls '_none' before and after) and the ring prompts' shares (ring, colour, background) with 95%
Wilson intervals. An experiment, not a shipped trainer: the mini guide's recipe is mini's own.
"""
from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import vqclip.mini.train.guide as G
from vqclip.mini import world
from vqclip.mini.train.batches import to_tensor
from vqclip.mini.train.export import export_fp16
from vqclip.nets.guide import GuideSpec, load_guide
from vqclip.nets.vqgan import load_vqgan
from vqclip.optim.augments import build_augments

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ring_preset as rp  # noqa: E402
import train_vqgan as vb  # noqa: E402

RING_SHARE, BROKEN_SHARE = 0.2, 0.1  # of each batch; the rest is the mini guide's own mix
HARD_SHARE = 0.2  # `--hard-misses`: of each batch, `hard_near_miss` images instead of the broken rings
RING_SPEC = GuideSpec(labels=(*world.SHAPES, "ring", "_none"), widths=G.SPEC.widths, strides=G.SPEC.strides)
BATCH, POOL_SHARE, REFINE_LR, HELD_RUNS = 64, 0.15, 5e-4, 8  # refinement: batch, generator share, lr, runs held out
HELD_IMAGES = 400  # the ring_sample images the refined guide's held-out accuracy is measured on


def hard_near_miss(rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """A near miss of the kinds the generator draws with a ring guide (image [64,64,3] uint8, colour, background), in
    the rings' width: a ring one gap short (4 in 10), ring_preset.py's broken ring (3 in 10), a ring with a straight
    tail of 6-16 px (3 in 20) or two touching smaller rings, a figure eight (3 in 20)."""
    u = rng.random()
    if u < 0.4:
        return rp.broken_ring(rng, one_gap=1.0)
    if u < 0.7:
        return rp.broken_ring(rng)
    color, bg = rng.choice(list(world.COLORS), 2, replace=False)
    im = Image.new("RGB", (vb.SIZE, vb.SIZE), world.COLORS[bg])
    draw, fill, width = ImageDraw.Draw(im), world.COLORS[color], vb.RING_WIDTH
    cx, cy, r = *rng.uniform(24, 40, 2), rng.uniform(12, 18)
    if u < 0.85:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=width)
        a, length = rng.uniform(0, 2 * np.pi), rng.uniform(6, 16)
        x0, y0 = cx + r * np.cos(a), cy + r * np.sin(a)
        draw.line((x0, y0, x0 + length * np.cos(a), y0 + length * np.sin(a)), fill=fill, width=width)
    else:
        r2, a = r * 0.6, rng.uniform(0, 2 * np.pi)
        for side in (-1, 1):
            x, y = cx + side * r2 * np.cos(a), cy + side * r2 * np.sin(a)
            draw.ellipse((x - r2, y - r2, x + r2, y + r2), outline=fill, width=width)
    return np.asarray(im), str(color), str(bg)


def ring_sample(rng: np.random.Generator, hard: bool = False) -> tuple[np.ndarray, int]:
    """One training image (uint8 [64,64,3]) and its label: a ring, a broken ring (a near miss; with `hard`,
    HARD_SHARE of `hard_near_miss` instead) or the mini mix."""
    u = rng.random()
    if u < RING_SHARE:
        return vb.ring(rng)[0], len(world.SHAPES)
    if u < RING_SHARE + (HARD_SHARE if hard else BROKEN_SHARE):
        return (hard_near_miss(rng) if hard else rp.broken_ring(rng))[0], len(world.SHAPES) + 1
    label = G.sample(rng)
    return label[0], label[1] if label[1] < len(world.SHAPES) else len(world.SHAPES) + 1


def train_ring_guide(vqgan_run: Path, out: Path, steps: int, hard: bool = False) -> dict:
    """The mini guide's training with the ring label (near misses `hard_near_miss` with `hard`), written to
    out/guide.json + guide.safetensors."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vqgan.yaml", "vqgan.safetensors"):  # train_guide shows its images through out's VQGAN
        shutil.copy(vqgan_run / "vqgan" / name, out / name)
    return G.train_guide(out, steps=steps, spec=RING_SPEC, draw=functools.partial(ring_sample, hard=hard))


def pool_prompts() -> list[tuple[str, str, str]]:
    """The ring prompts ring_preset.py does not judge (44 colour pairs): the generator's draws for the refinement."""
    judged = {(c, b) for _, c, b in rp.ring_prompts()}
    return [(f"{world._a(c)} {c} ring on {world._a(b)} {b} background", c, b) for c in world.COLORS
            for b in world.COLORS if c != b and (c, b) not in judged]


def generator_images(model: str, guide: Path, out: Path, seed: int, extra: list[str]) -> list[list[np.ndarray]]:
    """What `model` draws for each pool prompt with `guide`, a list per run (uint8 [64,64,3]): its final image and
    the frames of its second half, where the near misses the guide lets through take their shape."""
    runs = []
    for i, (prompt, _, _) in enumerate(pool_prompts()):
        run = out / f"{i:02d}"
        rp.call(["generate", prompt, "--model", model, "--seed", str(seed), "--out", str(run), "--save-every", "25",
                 "--no-video", "--quiet", *guide_options(guide), *extra])
        frames = sorted((run / "frames").glob("*.png"))
        runs.append([np.asarray(Image.open(f).convert("RGB")) for f in [run / "final.png", *frames[len(frames) // 2:]]])
    return runs


def refine_guide(guide: Path, runs: list[list[np.ndarray]], out: Path, steps: int, seed: int = 0) -> dict:
    """Fine-tune `guide` with the generator's images as near misses (POOL_SHARE of each batch, '_none', as a GAN's
    discriminator sees its generator), the rest ring_sample's mix; written to `out` (guide and its VQGAN). Figures:
    held-out accuracy per label, and the share of the final images of HELD_RUNS runs it never saw that the guide calls
    '_none' before and after."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vqgan.yaml", "vqgan.safetensors"):
        shutil.copy(guide / name, out / name)
    model = load_guide(guide / "guide.json", guide / "guide.safetensors").train().requires_grad_(True)
    vqgan = load_vqgan(guide / "vqgan.yaml", guide / "vqgan.safetensors")
    none, k = model.labels.index("_none"), round(BATCH * POOL_SHARE)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(runs))
    held = to_tensor(np.stack([runs[i][0] for i in order[:HELD_RUNS]]))
    train = to_tensor(np.stack([im for i in order[HELD_RUNS:] for im in runs[i]]))

    def called_none(x: torch.Tensor) -> float:
        with torch.no_grad():
            return float((model.eval()(x).argmax(1) == none).float().mean())

    before = called_none(held)
    augment = build_augments(["affine"])
    opt = torch.optim.AdamW(model.train().parameters(), REFINE_LR, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, REFINE_LR, total_steps=steps, pct_start=0.1)
    held_x, held_y = G.batch(np.random.default_rng(seed + 10_000), HELD_IMAGES, vqgan, ring_sample)
    t0 = time.time()
    for _ in range(steps):
        x, y = G.batch(rng, BATCH - k, vqgan, ring_sample)
        x = torch.cat([x, train[torch.from_numpy(rng.integers(len(train), size=k))]])
        G.fit_step(model, opt, sched, augment, x, torch.cat([y, torch.full((k,), none)]))
    figures = G.held_out_figures(model, held_x, held_y)
    export_fp16(model.net, out, "guide.safetensors", "guide.json", model.spec.to_json())
    return {"wall_s": time.time() - t0, "steps": steps, "runs": len(runs), "images": len(train), **figures,
            "generator_called_none": [before, called_none(held)]}


def guide_options(folder: Path) -> list[str]:
    """The `vqclip generate` options that use the guide in `folder`."""
    return ["--set", f"guide.model={folder / 'guide.json'}", "--set", f"guide.weights={folder / 'guide.safetensors'}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vqgan", type=Path, help="the `vqclip train vqgan` run (ring_preset.py's) to train a guide with")
    p.add_argument("--model", required=True, help="the preset to generate with (e.g. RUNC/clip)")
    p.add_argument("--steps", type=int, default=600, help="guide training steps (the mini guide: 1200)")
    p.add_argument("--guide", type=Path, help="a guide this script trained before (its OUT/guide): generate only")
    p.add_argument("--ring-width", type=int, default=vb.RING_WIDTH, help="its rings' and broken rings' width in px")
    p.add_argument("--rounds", type=int, default=0, help="refine the guide this many times against what the preset "
                   "draws with it for the 44 pool prompts (seeds 100, 101, ...)")
    p.add_argument("--refine-steps", type=int, default=200, help="training steps of each refinement")
    p.add_argument("--hard-misses", action="store_true", help="near misses the generator draws: rings one gap short, "
                   "with a tail, figure eights (`hard_near_miss`, HARD_SHARE of each batch)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="keep the guide and the images here (default: a temporary folder)")
    p.add_argument("extra", nargs="*", help="extra `vqclip generate` options (after --)")
    args = p.parse_args(argv)
    if (args.vqgan is None) == (args.guide is None):
        p.error("give --vqgan to train a guide, or --guide to use one trained before")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        folder = args.guide or out / "guide"
        if args.guide is None:
            with rp.ring_width(args.ring_width):
                guide = train_ring_guide(args.vqgan, folder, args.steps, args.hard_misses)
            (folder / "figures.json").write_text(json.dumps(guide) + "\n")  # for a later --guide
        else:
            guide = json.loads((folder / "figures.json").read_text())
        runs, rounds = [], []
        for r in range(args.rounds):
            runs += generator_images(args.model, folder, out / f"pool{r + 1}", 100 + r, args.extra)
            previous, folder = folder, out / f"guide{r + 1}"
            with rp.ring_width(args.ring_width):
                rounds.append(refine_guide(previous, runs, folder, args.refine_steps))
            (folder / "figures.json").write_text(json.dumps(rounds[-1]) + "\n")
        rows = rp.generate(args.model, [(q, c, b, None) for q, c, b in rp.ring_prompts()], args.seeds,
                           out / "rings", [*guide_options(folder), *args.extra])
    print(json.dumps({"guide": guide, "rounds": rounds, "ring_width": args.ring_width, "hard_misses": args.hard_misses,
                      "rings": rp.shares(rows, ("ring", "color", "background")), "generate_options": args.extra},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
