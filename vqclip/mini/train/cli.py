"""Reproduce the shipped mini weights: `python -m vqclip.mini.train vqgan|clip|guide --seed 0 [--out DIR]` (VQGAN
first: the last CLIP stages generate with it, and the guide learns from its reconstructions); the held-out judge:
`judge --seed 1`. Weights go to
./mini-weights unless --out says otherwise, never over the shipped ones unless --out names their folder."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vqclip.errors import VqclipError
from vqclip.mini import WEIGHTS_DIR
from vqclip.nets.device import usable_threads


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, train one model, print its measured figures as JSON."""
    p = argparse.ArgumentParser(prog="python -m vqclip.mini.train", description=__doc__)
    p.add_argument("which", choices=["clip", "vqgan", "guide", "judge"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the shipped recipe)")
    p.add_argument("--out", type=Path, default=Path("mini-weights"),
                   help=f"folder to write the weights into (default ./mini-weights; the shipped ones: {WEIGHTS_DIR})")
    p.add_argument("--stage", choices=["all", "1", "2", "3", "4"], default="all",
                   help="clip only: 1 = from scratch, 2 = clutter fine-tune, 3 = fine-tune against generations with the "
                        "VQGAN in --out, 4 = the same against a stronger generator with a paired loss (2-4 start from "
                        "the CLIP in --out); all (default) = 1, 2, 3, 4")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    import torch  # here: `--help` of the training command needs no torch

    if args.threads:
        torch.set_num_threads(usable_threads(args.threads))
    kw = {"seed": args.seed} | ({"steps": args.steps} if args.steps is not None else {})
    try:
        if args.steps is not None and args.steps < 1:
            raise VqclipError(f"--steps: must be >= 1, got {args.steps}")
        if args.out.exists() and not args.out.is_dir():
            raise VqclipError(f"--out {args.out}: is a file, not a folder; give a folder for the weights")
        try:
            args.out.mkdir(parents=True, exist_ok=True)  # found unwritable now, not after the training
        except OSError as exc:
            raise VqclipError(f"--out {args.out}: cannot make the folder ({exc.strerror or exc})") from None
        if args.which == "clip":
            from vqclip.mini.train.clip import train_clip  # here: one model's code, when it is trained

            figures = train_clip(args.out, stage=args.stage, **kw)
        elif args.which == "judge":
            from vqclip.mini.train.clip import train_judge  # here: one model's code, when it is trained

            figures = train_judge(args.out, **kw)
        elif args.which == "guide":
            from vqclip.mini.train.guide import train_guide  # here: one model's code, when it is trained

            figures = train_guide(args.out, **kw)
        else:
            from vqclip.mini.train.vqgan import train_vqgan  # here: one model's code, when it is trained

            figures = train_vqgan(args.out, **kw)
    except VqclipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(figures, indent=2))
    return 0

