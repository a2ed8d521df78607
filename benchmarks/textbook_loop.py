"""The classic VQGAN+CLIP loop as the public notebooks and scripts run it (`vqclip.measure.textbook`), timed the way
`vqclip bench` times vqclip, for benchmarking vqclip against.

    python benchmarks/textbook_loop.py --size 256 --cutn 16 --steps 5 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vqclip.measure.bench import (VQGAN_ARCHS, count_gflop, format_result, peak_memory, reset_peak,  # noqa: E402
                                  summarise, time_steps)
from vqclip.measure.textbook import (ClampWithGrad, MakeCutouts, Prompt, ReplaceGrad, TextbookVQGAN,  # noqa: E402,F401
                                     build, clamp_with_grad, make_loop, replace_grad, textbook_loss,
                                     vector_quantize)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--cutn", type=int, default=16)
    p.add_argument("--clip", default="ViT-B-32")
    p.add_argument("--vqgan", default="imagenet-16384", choices=list(VQGAN_ARCHS))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, perceptor, tokenizer = build(args.vqgan, args.clip, device)
    reset_peak(device)
    torch.manual_seed(0)
    train = make_loop(model, perceptor, tokenizer, args.size, args.cutn, device)
    times = time_steps(train, args.warmup, args.steps, device)
    mem = peak_memory(device)
    gflop = None if args.no_flops else count_gflop(train)
    r = summarise("textbook", times, gflop, device, size=args.size, cutn=args.cutn, vqgan=args.vqgan, clip=args.clip,
                  precision="fp32", threads=torch.get_num_threads(), warmup=args.warmup)
    r.peak_mem_bytes, r.mem_kind = mem
    print(json.dumps(r.to_dict()) if args.json else format_result(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
