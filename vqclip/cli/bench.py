"""`vqclip bench`: seconds per step, it/s, peak memory and achieved GFLOP/s of the generator on this machine."""

from __future__ import annotations

import argparse
import json

from ..nets.device import PRECISIONS
from ..nets.memory import MEMORY_MODES
from ..errors import VqclipError
from .options import RawHelpFormatter

EPILOG = """examples:
  vqclip bench --random-weights                       # 256x256, 16 cutouts, ImageNet f16 VQGAN + ViT-B/32
  vqclip bench --random-weights --size 512 --memory low --json
  vqclip bench --vqgan mini --size 64 --cutn 8         # the embedded mini preset, its own CLIP, offline
  python benchmarks/compare.py                         # vqclip against the textbook loop, as a table
  vqclip bench --suite gpu                             # the GPU check: speed, memory, correctness (8 minutes)
  vqclip bench --suite gpu --device cpu --quick        # the same check on tiny sizes (about a minute)

Random weights need no download and time exactly the same work as the real weights."""


def register(subparsers) -> None:
    """Add the `bench` subcommand."""
    p = subparsers.add_parser("bench", help="time the generator: s/step, it/s, peak memory, GFLOP/s",
                              description=__doc__, epilog=EPILOG, formatter_class=RawHelpFormatter)
    a = p.add_argument
    a("--suite", choices=("step", "gpu"), default="step",
      help="step: time one configuration (the options below); gpu: the whole GPU check (benchmarks/gpu_check.py: "
           "the options from --quick on)")
    a("--size", type=int, default=256, metavar="N", help="image side in pixels")
    a("--cutn", type=int, default=16, metavar="N", help="cutouts per step")
    a("--clip", default=None, metavar="NAME",
      help="open_clip architecture (default: the preset's own CLIP when --vqgan names a preset, else ViT-B-32)")
    a("--vqgan", default="imagenet-16384", metavar="NAME",
      help="VQGAN architecture: imagenet-16384, imagenet-1024, wikiart-16384, wikiart-1024, openimages-8192, or a "
           "taming YAML with --random-weights; an installed preset name without it")
    a("--random-weights", action="store_true", help="random weights: nothing is downloaded or loaded")
    a("--device", default="auto", metavar="D", help="auto, cpu, cuda, cuda:N, mps")
    a("--precision", choices=list(PRECISIONS), default="auto", help="autocast precision")
    a("--memory", choices=list(MEMORY_MODES), default="auto",
      help="low: decoder checkpointing + cutout micro-batches; auto: only when memory is short")
    a("--micro-batch", type=int, default=None, metavar="N", help="cutouts per CLIP pass, 0 = all (default: chosen by --memory)")
    a("--compile", action="store_true", help="torch.compile the decoder and CLIP (falls back to eager on failure)")
    a("--steps", type=int, default=5, metavar="N", help="timed steps; the median is reported")
    a("--warmup", type=int, default=2, metavar="N", help="untimed steps first")
    a("--threads", type=int, default=None, metavar="N", help="torch CPU threads (default: torch's choice)")
    a("--no-flops", action="store_true", help="skip the FLOP count (one extra step)")
    a("--json", action="store_true", help="print the result as one JSON object")
    from ..measure.gpuargs import add_arguments  # torch-free: the check's own options

    add_arguments(p, device_flag=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build, time and print (or run the GPU check)."""
    if args.suite == "gpu":
        from ..measure.gpuargs import DEFAULT_OUT  # here: the check loads torch, models and the pipeline
        from ..measure.gpusuite import check_models, run_check

        if args.budget <= 0:
            raise VqclipError("--budget: need a positive number of seconds")
        run_check(args.device, args.quick, args.budget, args.out or DEFAULT_OUT, check_models(args), args.real_weights)
        return 0
    from ..measure.bench import format_result, run_bench  # torch: here for a fast --help

    result = run_bench(size=args.size, cutn=args.cutn, clip=args.clip, vqgan=args.vqgan,
                       random_weights=args.random_weights, device=args.device, precision=args.precision,
                       steps=args.steps, warmup=args.warmup, threads=args.threads, flops=not args.no_flops,
                       memory=args.memory, micro_batch=args.micro_batch, compile=args.compile or None)
    print(json.dumps(result.to_dict()) if args.json else format_result(result))
    return 0
