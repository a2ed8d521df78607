"""`vqclip train vqgan`: fine-tune a taming VQGAN on a folder of your images (vqclip.train.vqgan does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import VqclipError


def run_vqgan(args: argparse.Namespace) -> int:
    """Train (or resume) a VQGAN fine-tuning run and print where its results are."""
    import torch  # here: --help needs no torch

    from ..nets.device import usable_threads  # here: --help needs no torch
    from ..train.vqgan import VqganTrainConfig, train_vqgan  # here: --help needs no torch

    if args.threads:
        torch.set_num_threads(usable_threads(args.threads))
    if args.resume:
        metrics = train_vqgan(resume=Path(args.resume))
    else:
        missing = [f for f, v in (("--data", args.data), ("--from", args.source), ("--out", args.out)) if not v]
        if missing:
            raise VqclipError(f"train vqgan: {', '.join(missing)} missing; give --data, --from and --out (or --resume "
                              "RUN)")
        cfg = VqganTrainConfig(data=args.data, source=args.source, out=args.out, steps=args.steps, batch=args.batch,
                               size=args.size, lr=args.lr, disc_start=args.disc_start, disc_weight=args.disc_weight,
                               disc_ndf=args.disc_ndf,
                               codebook_weight=args.codebook_weight, perceptual_weight=args.perceptual_weight,
                               freeze=args.freeze or "", val=args.val, seed=args.seed, amp=args.amp,
                               checkpoint_every=args.checkpoint_every, grid_every=args.grid_every,
                               log_every=args.log_every, device=args.device, devices=args.devices or "")
        metrics = train_vqgan(cfg)
    if metrics is None:  # one of torchrun's other processes: the first one reports
        return 0
    before, after = (metrics.get(k) or {} for k in ("before", "after"))
    print(f"done: {metrics['steps']} steps, {metrics['images_per_s']:.1f} images/s; held-out L1 "
          f"{before.get('l1') or float('nan'):.4f} -> {after.get('l1') or float('nan'):.4f}")
    return 0


def register(sub, formatter_class) -> None:
    """Add `vqgan` to the `train` command's subcommands."""
    c = sub.add_parser("vqgan", help="fine-tune a VQGAN on a folder of images (taming's objective)",
                       description="Fine-tune a taming VQGAN on a folder of images with taming's objective (L1 + "
                                   "LPIPS when its weights are on disk + codebook/commitment + a patch discriminator "
                                   "after --disc-start); writes reconstruction grids, checkpoints and the exported "
                                   "preset folder RUN/vqgan (use it as --model RUN/vqgan).",
                       formatter_class=formatter_class)
    a = c.add_argument
    a("--data", metavar="DIR", help="a folder of images (any sizes; searched recursively)")
    a("--from", dest="source", metavar="PRESET|CONFIG+CKPT",
      help="the VQGAN to start from: a preset (mini, imagenet-16384), a preset folder, or CONFIG.yaml+CHECKPOINT")
    a("--out", metavar="RUN", help="the run folder (split.json, train.json, checkpoint.pt, grids/, metrics.json, "
                                   "vqgan/)")
    a("--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint (same result as unbroken)")
    a("--steps", type=int, default=1000, help="optimiser steps")
    a("--batch", type=int, default=4, help="images per step")
    a("--size", type=int, default=256, help="side of the random crops (a multiple of the VQGAN's downsampling)")
    a("--lr", type=float, default=1.8e-5, help="learning rate of both optimisers (Adam, betas 0.5, 0.9)")
    a("--disc-start", type=int, default=500, metavar="STEP", help="step at which the discriminator joins")
    a("--disc-weight", type=float, default=0.8, help="weight of the GAN term (times taming's adaptive weight)")
    a("--disc-ndf", type=int, default=64, metavar="N", help="filters of the discriminator's first layer")
    a("--codebook-weight", type=float, default=1.0, help="weight of the codebook/commitment loss")
    a("--perceptual-weight", type=float, default=1.0, help="weight of LPIPS (0: none; needs `vqclip models download "
                                                           "lpips-vgg vgg16-imagenet`)")
    a("--freeze", choices=["encoder", "codebook"], help="keep the encoder or the codebook as it is")
    a("--val", type=float, default=0.1, help="share of the images held out for the L1 figure and the grids")
    a("--seed", type=int, default=0, help="seed of the split, the order, the crops and the discriminator")
    a("--amp", action="store_true", help="bf16 autocast (default: float32)")
    a("--checkpoint-every", type=int, default=100, metavar="K", help="write RUN/checkpoint.pt every K steps")
    a("--grid-every", type=int, default=100, metavar="K", help="write RUN/grids/step_N.png every K steps")
    a("--log-every", type=int, default=10, metavar="K", help="log losses, speed and ETA every K steps")
    a("--device", default="cpu", help="cpu, cuda or cuda:N")
    a("--devices", metavar="D1,D2", help="train data-parallel, one process per device, each with its share of --batch: "
                                         "cpu,cpu (gloo) or cuda:0,cuda:1 (nccl); under torchrun, leave it out")
    a("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    a("--quiet", action="store_true", help="only warnings and the result")
    c.set_defaults(func=run_vqgan)
