"""The mini VQGAN learns a shape it never saw: `vqclip train vqgan` fine-tunes it on rings (3 px wide) in the mini
world's colours, on random crops (default: the whole 64 px image), and the reconstruction error on whole held-out
rings is measured before and after; its speed is compared with a plain loop (the same network and crops, L1 +
codebook loss, Adam, tensors already in memory).

    python benchmarks/train_vqgan.py [--steps 320] [--batch 8] [--size 64] [--ring-width 3 | --plus 0.2] [--threads 1]

Prints one JSON object: held-out L1 before/after and its drop, the pixel judge's colour verdicts on the
reconstructions (the judge knows filled circles, squares and triangles only, so it cannot say whether a ring is a ring:
its colour and background checks are the ones that apply), the images/s of the trainer and of the plain loop.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from vqclip.mini import judge, world
from vqclip.models.resolve import resolve_preset
from vqclip.nets.vqgan import load_vqgan
from vqclip.train import vqgan as V

SIZE = 64
RING_WIDTH = 3


def ring(rng: np.random.Generator, width: int | None = None) -> tuple[np.ndarray, str, str]:
    """A 64x64 ring (`width` px wide, default RING_WIDTH, radius 12-20 px) of a world colour on another world colour:
    (image [64,64,3] uint8, colour, background). The mini world has filled shapes only: the mini VQGAN never saw a
    ring."""
    color, bg = rng.choice(list(world.COLORS), 2, replace=False)
    im = Image.new("RGB", (SIZE, SIZE), world.COLORS[bg])
    cx, cy = rng.uniform(24, 40, 2)
    r = rng.uniform(12, 20)
    ImageDraw.Draw(im).ellipse((cx - r, cy - r, cx + r, cy + r), outline=world.COLORS[color],
                                    width=RING_WIDTH if width is None else width)
    return np.asarray(im), str(color), str(bg)


def plus(rng: np.random.Generator, arm: float) -> tuple[np.ndarray, str, str]:
    """A 64x64 filled plus sign (half-extent 12-20 px, arms `arm` x that half-extent to either side of its centre line)
    of a world colour on another, drawn by pixel centres as the world draws its shapes: (image, colour, background).
    A filled shape the mini world lacks, the ring's alternative: does its error drop as a thin ring's does?"""
    color, bg = rng.choice(list(world.COLORS), 2, replace=False)
    cx, cy = rng.uniform(24, 40, 2)
    r = rng.uniform(12, 20)
    y, x = world.pixel_centres(SIZE, SIZE)
    dx, dy = np.abs(x - cx), np.abs(y - cy)
    inside = ((dx <= r) & (dy <= arm * r)) | ((dy <= r) & (dx <= arm * r))
    img = np.where(inside[..., None], np.array(world.COLORS[color], np.uint8), np.array(world.COLORS[bg], np.uint8))
    return img, str(color), str(bg)


def write_rings(folder: Path, n: int, seed: int, width: int | None = None,
                plus_arm: float | None = None) -> list[tuple[str, str]]:
    """n ring PNGs (`width` px wide, default RING_WIDTH), or plus signs where `plus_arm` is given, in `folder`; their
    (colour, background)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img, color, bg = ring(rng, width) if plus_arm is None else plus(rng, plus_arm)
        Image.fromarray(img).save(folder / f"ring{i:04d}.png")
        out.append((color, bg))
    return out


def recon(model, x: torch.Tensor) -> torch.Tensor:
    """Quantised reconstructions [N,3,64,64] in [0,1]."""
    with torch.no_grad():
        return torch.cat([V.reconstruct(model, x[i:i + 16])[0].add(1).div(2).clamp(0, 1) for i in range(0, len(x), 16)])


def judged(rec: torch.Tensor, labels: list[tuple[str, str]]) -> dict:
    """Share of reconstructions whose ring colour (one object) and background the pixel judge finds right."""
    color = bg = 0
    for img, (c, b) in zip(rec, labels):
        v = judge.judge(img[None], f"a {c} circle on a {b} background")  # the shape word is not judged here
        color += v.color
        bg += bool(v.background)
    return {"color": color / len(labels), "background": bg / len(labels)}


def plain_loop(model, x: torch.Tensor, steps: int, batch: int, lr: float) -> float:
    """images/s of a bare fine-tuning loop: L1 + codebook loss, Adam, batches sliced from tensors in memory."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.9))
    t0 = time.time()
    for s in range(steps):
        xb = x[(s * batch) % (len(x) - batch):][:batch]
        h = model.quant_conv(model.encoder(xb * 2 - 1))
        z, q, _ = model.quantize(h)
        rec = model.decoder(model.post_quant_conv(z))
        loss = F.l1_loss(rec, xb * 2 - 1) + q
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=320)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--size", type=int, default=64, help="side of the random training crops")
    ap.add_argument("--disc-start", type=int, default=None, help="default: never (the steps): L1 + codebook only")
    ap.add_argument("--train", type=int, default=160, help="training rings")
    ap.add_argument("--held", type=int, default=64, help="held-out rings")
    ap.add_argument("--ring-width", type=int, default=RING_WIDTH, help="the rings' line width in pixels")
    ap.add_argument("--plus", type=float, metavar="ARM",
                    help="plus signs instead of rings, arms ARM x their half-extent to either side")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="/tmp/vqclip-bench-vqring")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    write_rings(out / "train", args.train, seed=1, width=args.ring_width, plus_arm=args.plus)
    labels = write_rings(out / "held", args.held, seed=2, width=args.ring_width, plus_arm=args.plus)
    held = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), np.float32) / 255).permute(2, 0, 1)
                        for p in sorted((out / "held").glob("*.png"))])
    files = resolve_preset("mini", fetch_clip_weights=False)
    mini = load_vqgan(files.vqgan_config, files.vqgan_checkpoint)
    rec0 = recon(mini, held)
    cfg = V.VqganTrainConfig(data=str(out / "train"), source="mini", out=str(out / "run"), steps=args.steps,
                             batch=args.batch, size=args.size, lr=args.lr, disc_ndf=32,
                             disc_start=args.steps if args.disc_start is None else args.disc_start,
                             val=0.0, checkpoint_every=args.steps, grid_every=args.steps, log_every=50)
    t0 = time.time()
    metrics = V.train_vqgan(cfg)
    wall = time.time() - t0
    tuned = load_vqgan(out / "run" / "vqgan" / "vqgan.yaml", out / "run" / "vqgan" / "vqgan.safetensors")
    rec1 = recon(tuned, held)
    l1 = [float((r - held).abs().mean()) for r in (rec0, rec1)]
    train_x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), np.float32) / 255)
                           .permute(2, 0, 1) for p in sorted((out / "train").glob("*.png"))])
    crops = train_x[:, :, :args.size, :args.size]  # the plain loop's fixed crops: no data pipeline
    plain = plain_loop(load_vqgan(files.vqgan_config, files.vqgan_checkpoint).train().requires_grad_(True), crops,
                       min(args.steps, 20), args.batch, args.lr)
    print(json.dumps({
        "steps": args.steps, "batch": args.batch, "size": args.size, "threads": args.threads,
        "ring_width": args.ring_width, "plus_arm": args.plus, "train_images": args.train,
        "held_out_images": args.held, "held_out_l1": {"before": l1[0], "after": l1[1], "drop": 1 - l1[1] / l1[0]},
        "judge_before": judged(rec0, labels), "judge_after": judged(rec1, labels),
        "trainer_images_per_s": metrics["images_per_s"], "plain_loop_images_per_s": plain, "wall_s": wall,
        "perceptual": metrics["perceptual"]}, indent=1))


if __name__ == "__main__":
    main()
