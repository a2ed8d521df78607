"""The GPU check's command-line options, without torch (so `vqclip bench --help` stays fast)."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the source checkout (benchmarks/ beside vqclip/), when there is one
DEFAULT_OUT = ROOT / "benchmarks" / "results_gpu.json"


def add_arguments(p: argparse.ArgumentParser, device_flag: bool = True) -> None:
    """The check's options (shared by the script and `vqclip bench --suite gpu`)."""
    if device_flag:
        p.add_argument("--device", default="auto", help="auto, cuda, cuda:N, cpu, mps")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps (about a minute on a CPU)")
    p.add_argument("--budget", type=float, default=480.0, metavar="SECONDS",
                   help="stop cleanly after this many seconds and report what was measured")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help=f"the JSON results (default: {DEFAULT_OUT.relative_to(ROOT)} in the source checkout)")
    p.add_argument("--models", choices=("imagenet", "tiny"), default=None,
                   help="imagenet: the ImageNet f16 16384 VQGAN + ViT-B/32 (default); tiny: tiny random models "
                        "(the default with --quick)")
    p.add_argument("--real-weights", action="store_true",
                   help="vqclip's rows use the installed imagenet-16384 preset's weights (random otherwise)")


def script_parser() -> argparse.ArgumentParser:
    """The parser of `python benchmarks/gpu_check.py` (its --help and its errors come before torch loads)."""
    p = argparse.ArgumentParser(description="The GPU check as one run: every section in turn within the budget, the "
                                            "JSON rewritten after each, then the table.")
    add_arguments(p)
    return p
