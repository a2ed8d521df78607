"""Does a guide that knows rings let a preset of your own draw one? The mini preset's guide (a small CNN, see
vqclip/mini/train/guide.py) tells circles, squares and triangles from near misses and pulls generation towards the
shape a prompt names; it knows no ring. This trains the same guide with a fifth label, "ring" (train_vqgan.py's rings,
a fifth of each batch), broken rings (ring_preset.py's) among the near misses, seen through the ring VQGAN; then
generates ring_preset.py's 12 ring prompts with a preset (`--model`) and this guide, and judges them with its judge.

    python benchmarks/ring_guide.py --vqgan RUNV --model RUNC/clip [--ring-width 5] [-- --set guide.weight=0.5]
    python benchmarks/ring_guide.py --guide OUT/guide --model RUNC/clip    # a guide trained before: generate only

Prints one JSON object: the guide's held-out accuracy per label and the ring prompts' shares (ring, colour,
background) with 95% Wilson intervals. An experiment, not a shipped trainer: the mini guide's recipe is mini's own.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import vqclip.mini.train.guide as G
from vqclip.mini import world
from vqclip.nets.guide import GuideSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ring_preset as rp  # noqa: E402
import train_vqgan as vb  # noqa: E402

RING_SHARE, BROKEN_SHARE = 0.2, 0.1  # of each batch; the rest is the mini guide's own mix


def ring_sample(rng: np.random.Generator, mini_sample=G.sample) -> tuple[np.ndarray, int]:
    """One training image (uint8 [64,64,3]) and its label: a ring, a broken ring (a near miss) or the mini mix."""
    u = rng.random()
    if u < RING_SHARE:
        return vb.ring(rng)[0], len(world.SHAPES)
    if u < RING_SHARE + BROKEN_SHARE:
        return rp.broken_ring(rng)[0], len(world.SHAPES) + 1
    label = mini_sample(rng)
    return label[0], label[1] if label[1] < len(world.SHAPES) else len(world.SHAPES) + 1


def train_ring_guide(vqgan_run: Path, out: Path, steps: int) -> dict:
    """The mini guide's training with the ring label, written to out/guide.json + guide.safetensors."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vqgan.yaml", "vqgan.safetensors"):  # train_guide shows its images through out's VQGAN
        shutil.copy(vqgan_run / "vqgan" / name, out / name)
    saved = G.SPEC, G.NONE, G.sample
    G.SPEC = GuideSpec(labels=(*world.SHAPES, "ring", "_none"), widths=G.SPEC.widths, strides=G.SPEC.strides)
    G.NONE, G.sample = len(world.SHAPES) + 1, ring_sample
    try:
        return G.train_guide(out, steps=steps)
    finally:
        G.SPEC, G.NONE, G.sample = saved


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vqgan", type=Path, help="the `vqclip train vqgan` run (ring_preset.py's) to train a guide with")
    p.add_argument("--model", required=True, help="the preset to generate with (e.g. RUNC/clip)")
    p.add_argument("--steps", type=int, default=600, help="guide training steps (the mini guide: 1200)")
    p.add_argument("--guide", type=Path, help="a guide this script trained before (its OUT/guide): generate only")
    p.add_argument("--ring-width", type=int, default=vb.RING_WIDTH, help="its rings' and broken rings' width in px")
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
                guide = train_ring_guide(args.vqgan, folder, args.steps)
            (folder / "figures.json").write_text(json.dumps(guide) + "\n")  # for a later --guide
        else:
            guide = json.loads((folder / "figures.json").read_text())
        extra = ["--set", f"guide.model={folder / 'guide.json'}", "--set",
                 f"guide.weights={folder / 'guide.safetensors'}", *args.extra]
        rows = rp.generate(args.model, [(q, c, b, None) for q, c, b in rp.ring_prompts()], args.seeds,
                           out / "rings", extra)
    print(json.dumps({"guide": guide, "ring_width": args.ring_width,
                      "rings": rp.shares(rows, ("ring", "color", "background")), "generate_options": extra[4:]},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
