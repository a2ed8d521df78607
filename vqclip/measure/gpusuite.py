"""The GPU check as one run: every section in turn within the budget, the JSON rewritten after each, then the table.

    python benchmarks/gpu_check.py                      # on the GPU: about 8 minutes, writes results_gpu.json
    python benchmarks/gpu_check.py --device cpu --quick # the whole check on tiny sizes (the test suite runs this)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import VqclipError, reason
from ..files.atomic import write_text
from ..nets.device import pick_device
from .gpuargs import DEFAULT_OUT, script_parser
from .gpucheck import (Budget, devices_section, largest_size, matmul_peak, oom_errors, speed_rows,
                       vqclip_models)
from .gpucorrect import bf16_vs_fp32, resume_after_kill, same_seed_twice

log = logging.getLogger("vqclip")

SECTIONS = ("device", "bf16_peak", "speed", "largest_size", "bf16_vs_fp32", "same_seed_twice", "resume_after_kill",
            "devices")


def settings(quick: bool, device: torch.device) -> dict:
    """What each section runs: the issue's sizes on a GPU; tiny ones with --quick (a minute on a CPU)."""
    if quick:
        return {"quick": True, "cases": [(32, 4)], "warmup": 1, "steps": 2, "row_s": 2.0, "largest_cutn": 4,
                "largest_start": 32, "largest_max": 64, "check_size": 32, "check_cutn": 4, "check_steps": 4,
                "resume_steps": 4}
    return {"quick": False, "cases": [(256, 32), (512, 64)], "warmup": 3, "steps": 10, "row_s": 20.0,
            "largest_cutn": 32, "largest_start": 256, "largest_max": 4096 if device.type == "cuda" else 512,
            "check_size": 256, "check_cutn": 32, "check_steps": 50, "resume_steps": 30}


def device_info(device: torch.device) -> dict:
    """The machine: torch and CUDA versions, the card and its memory."""
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.version.cuda, "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 2),
                    capability=f"{props.major}.{props.minor}", gpus=torch.cuda.device_count(),
                    cudnn=torch.backends.cudnn.version())
    return info


def run_check(device: str = "auto", quick: bool = False, budget: float = 480.0, out: Optional[Path] = None,
              models: str = "imagenet", real_weights: bool = False, echo: Callable[[str], None] = print) -> dict:
    """Run every section within `budget` seconds, writing `out` (JSON) after each; returns the results."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts: deterministic matmuls
    dev = pick_device(device)
    clock, cfg = Budget(budget), settings(quick, dev)
    results: dict = {"budget_s": budget, "quick": quick, "models": models,
                     **{name: "skipped: budget spent" for name in SECTIONS}}
    out = Path(out) if out else None

    def save() -> None:
        results["elapsed_s"] = round(time.monotonic() - clock.start, 1)
        if out:
            write_text(out, json.dumps(results, indent=1, default=str) + "\n")

    def section(name: str, need: float, fn: Callable[[], object]) -> None:
        if not clock.allows(need):
            return save()
        t0 = time.monotonic()
        echo(f"[{clock.left():5.0f} s left] {name} ...")
        try:
            results[name] = fn()
        except oom_errors() as exc:
            results[name] = f"skipped: out of memory ({reason(exc, 120)})"
        except VqclipError as exc:
            results[name] = f"skipped: {exc}"
        results.setdefault("section_s", {})[name] = round(time.monotonic() - t0, 1)
        save()

    section("device", 0, lambda: device_info(dev))
    section("bf16_peak", 1, lambda: matmul_peak(dev, quick))
    peak = results["bf16_peak"]["tflop_s"] if isinstance(results["bf16_peak"], dict) else 0.0
    built: dict = {}

    def nets():
        if "models" not in built:
            built["models"], results["model_names"] = vqclip_models(models, dev, real_weights)
        return built["models"]

    def partial(rows: list) -> None:
        results["speed"] = rows
        save()

    section("speed", cfg["row_s"], lambda: speed_rows(cfg, nets(), models, dev, clock, peak, partial))
    section("largest_size", cfg["row_s"], lambda: largest_size(nets(), cfg, dev, clock))
    c = (cfg["check_size"], cfg["check_cutn"], cfg["check_steps"])
    section("bf16_vs_fp32", cfg["row_s"], lambda: bf16_vs_fp32(nets(), *c, dev))
    section("same_seed_twice", cfg["row_s"], lambda: same_seed_twice(nets(), *c, dev))
    section("resume_after_kill", 10 * cfg["row_s"], lambda: resume_after_kill(dev, cfg["resume_steps"], clock))
    section("devices", -float("inf"), devices_section)  # instant: reported even when the budget is spent
    save()
    echo(table(results))
    return results


def _cell(value, fmt: str = "{}") -> str:
    return "—" if value is None else fmt.format(value)


def table(results: dict) -> str:
    """The results as markdown: the speed table, then one line per other section."""
    lines = []
    dev = results.get("device")
    if isinstance(dev, dict):
        lines.append(f"{dev.get('name', dev['device'])}, torch {dev['torch']}, CUDA {dev.get('cuda')}; "
                     f"models: {results.get('model_names', results['models'])}")
    peak = results.get("bf16_peak")
    lines.append(f"bf16 matmul peak: {peak['tflop_s']} TFLOP/s (n={peak['n']})" if isinstance(peak, dict)
                 else f"bf16 matmul peak: {peak}")
    lines += ["", "| size | cutn | impl | it/s | peak memory (GiB) | GFLOP/step | share of bf16 peak |",
              "|---|---|---|---|---|---|---|"]
    rows = results.get("speed")
    for r in rows if isinstance(rows, list) else []:
        if "skipped" in r:
            lines.append(f"| {r['size']}² | {r['cutn']} | {r['impl']} | {r['skipped']} | | | |")
            continue
        share = r.get("share_of_bf16_peak")
        lines.append(f"| {r['size']}² | {r['cutn']} | {r['impl']} | {r['it_s']:.2f} | {r['peak_mem_gib']:.2f} | "
                     f"{_cell(r.get('gflop_per_step'), '{:.4g}')} | {_cell(share and 100 * share, '{:.3g}%')} |")
    if not isinstance(rows, list):
        lines.append(f"| | | | {rows} | | | |")
    lines.append("")
    for name in ("largest_size", "bf16_vs_fp32", "same_seed_twice", "resume_after_kill", "devices"):
        value = results.get(name)
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in ("loss_fp32", "loss_bf16", "tried")}
        lines.append(f"- {name}: {json.dumps(value) if isinstance(value, dict) else value}")
    return "\n".join(lines)


def check_models(args: argparse.Namespace) -> str:
    """The models the check runs: as asked, else tiny ones with --quick (a minute on a CPU) and ImageNet's without."""
    return args.models or ("tiny" if args.quick else "imagenet")


def main(argv: Optional[list[str]] = None) -> int:
    """The script's entry point."""
    args = script_parser().parse_args(argv)
    if args.budget <= 0:
        raise VqclipError("--budget: need a positive number of seconds")
    run_check(args.device, args.quick, args.budget, args.out or DEFAULT_OUT, check_models(args), args.real_weights)
    return 0
