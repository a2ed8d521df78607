"""`vqclip train clip`: fine-tune a CLIP on your image-caption pairs (vqclip.train does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import VqclipError


def _split(text: str | None, sep: str) -> list[str]:
    """The non-empty parts of a separated list."""
    return [x.strip() for x in (text or "").split(sep) if x.strip()]


def run_clip(args: argparse.Namespace) -> int:
    """Train (or resume) a CLIP fine-tuning run and print where its results are."""
    import torch  # here: --help needs no torch

    from ..nets.device import usable_threads  # here: --help needs no torch
    from ..train.clip import TrainConfig, train_clip  # here: --help needs no torch

    if args.threads:
        torch.set_num_threads(usable_threads(args.threads))
    if args.resume:
        metrics = train_clip(resume=Path(args.resume))
    else:
        missing = [f for f, v in (("--data", args.data), ("--from", args.source), ("--out", args.out)) if not v]
        if missing:
            raise VqclipError(f"train clip: {', '.join(missing)} missing; give --data, --from and --out (or --resume "
                              "RUN)")
        cfg = TrainConfig(data=args.data, source=args.source, out=args.out, steps=args.steps, batch=args.batch,
                          accum=args.accum, lr=args.lr, wd=args.wd, warmup=args.warmup, val=args.val, seed=args.seed,
                          amp=not args.no_amp, lock_image=args.lock_image, lock_text=args.lock_text,
                          checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                          classes=_split(args.classes, ","), templates=_split(args.templates, ";") or ["{}"],
                          image_key=args.image_key, caption_key=args.caption_key, device=args.device,
                          devices=args.devices or "", generated=args.generated,
                          generated_weight=args.generated_weight, generated_life=args.generated_life)
        metrics = train_clip(cfg)
    if metrics is None:  # one of torchrun's other processes: the first one reports
        return 0
    after = metrics.get("after") or {}
    print(f"done: {metrics['steps']} steps, {metrics['images_per_s']:.1f} images/s; recall@1 image->text "
          f"{after.get('image_to_text_r1', float('nan')):.3f}")
    return 0


def register(subparsers) -> None:
    """Add `train` with its `clip` subcommand."""
    p = subparsers.add_parser("train", help="fine-tune your own models on your images",
                              description="Fine-tune models on your own data; see docs/training.md.")
    sub = p.add_subparsers(dest="what", metavar="WHAT")
    c = sub.add_parser("clip", help="contrastive fine-tuning of a CLIP on image-caption pairs",
                       description="Contrastive fine-tuning of an open_clip CLIP (open_clip's ClipLoss, tokenizer and "
                                   "transforms) on image-caption pairs; evaluates before and after on a held-out "
                                   "split and exports the CLIP to RUN/clip (use it as --clip-model RUN/clip).",
                       formatter_class=p.formatter_class)
    a = c.add_argument
    a("--data", metavar="DIR|CSV|JSONL", help="a folder of images with a .txt caption beside each, or a CSV / JSONL")
    a("--from", dest="source", metavar="MODEL[/TAG]|PRESET|PATH",
      help="the CLIP to start from: mini, ViT-B-32/openai, a CLIP folder (open_clip_config.json + weights), or a "
           "VQGAN's preset folder (RUN/vqgan: its CLIP; RUN/clip becomes one preset of both, --model RUN/clip)")
    a("--out", metavar="RUN", help="the run folder (split.json, train.json, checkpoint.pt, metrics.json, clip/)")
    a("--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint (same result as unbroken)")
    a("--steps", type=int, default=100, help="optimiser steps")
    a("--batch", type=int, default=32, help="image-caption pairs per step (the contrastive batch)")
    a("--accum", type=int, default=1, help="micro-batches per step (exact: the whole batch's loss and gradient)")
    a("--lr", type=float, default=1e-5, help="peak learning rate (AdamW)")
    a("--wd", type=float, default=0.2, help="weight decay of the weight matrices")
    a("--warmup", type=int, default=10, help="linear warmup steps before the cosine decay")
    a("--val", type=float, default=0.1, help="share of the pairs held out for evaluation")
    a("--seed", type=int, default=0, help="seed of the split, the data order and the augmentations")
    a("--no-amp", action="store_true", help="train in float32 (default: bf16 autocast)")
    a("--lock-image", action="store_true", help="freeze the image tower (LiT)")
    a("--lock-text", action="store_true", help="freeze the text tower")
    a("--generated", type=int, default=0, metavar="N",
      help="a pool of N generations drawn against the CLIP in training by --from's VQGAN; each pooled caption must "
           "rank its real image above them (makes the CLIP a guide generation cannot fool; docs/training.md)")
    a("--generated-weight", type=float, default=1.0, metavar="W", help="the weight of --generated's ranking loss")
    a("--generated-life", type=int, default=50, metavar="K",
      help="generation steps before a pooled latent restarts on another caption")
    a("--checkpoint-every", type=int, default=50, metavar="K", help="write RUN/checkpoint.pt every K steps")
    a("--log-every", type=int, default=10, metavar="K", help="log loss, speed and ETA every K steps")
    a("--classes", metavar="A,B,...", help="class names the captions say, for zero-shot accuracy (default: the "
                                           "captions themselves when few repeat)")
    a("--templates", metavar="T1;T2", help="';'-separated zero-shot templates with {} for the class (default '{}')")
    a("--image-key", default="filepath", help="CSV column / JSONL field of the image path")
    a("--caption-key", default="caption", help="CSV column / JSONL field of the caption")
    a("--device", default="cpu", help="cpu, cuda or cuda:N")
    a("--devices", metavar="D1,D2", help="train data-parallel, one process per device: cpu,cpu (gloo) or "
                                                     "cuda:0,cuda:1 (nccl); the batch is split among them")
    a("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    a("--quiet", action="store_true", help="only warnings and the result")
    c.set_defaults(func=run_clip)
    from .trainvqgan import register as register_vqgan  # noqa: PLC0415 (its own module: `train vqgan`)
    register_vqgan(sub, p.formatter_class)
