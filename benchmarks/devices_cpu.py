"""One run across devices on CPU: `--devices cpu,cpu` (two gloo processes of one thread each, each scoring half of
the cutouts) against one process of two threads, on the mini preset at 256², 32 cutouts, one start, the same seed;
seconds per step after the first (model loading and the processes' start left out: the total is given too).

    python benchmarks/devices_cpu.py                # 256², cutn 32, 10 steps
    python benchmarks/devices_cpu.py --steps 5 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """A step callback noting when each step ended."""

    def __init__(self):
        self.times = []

    def __call__(self, event) -> None:
        self.times.append(time.perf_counter())


def measure(devices: list[str], threads: int, size: int, cutn: int, steps: int, out: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from vqclip.runs.jobs import build_config
    from vqclip.runs.pipeline import run_job

    torch.set_num_threads(threads)
    job = {"model": "mini", "prompt": "a red circle", "seed": 1, "steps": steps, "size": [size, size],
           "cutouts": {"n": cutn}, "candidates": {"n": 1}, "threads": threads, "devices": devices,
           "output": {"dir": str(out), "video": False, "progress": False}}
    clock, start = Clock(), time.perf_counter()
    run = run_job(build_config(base=[("bench", job)]), extra_callbacks=[clock])
    total = time.perf_counter() - start
    per_step = (clock.times[-1] - clock.times[0]) / (len(clock.times) - 1)
    return {"devices": ",".join(devices) or "cpu", "threads": threads, "s_per_step": round(per_step, 3),
            "total_s": round(total, 1), "final_loss": round(run.result.losses[-1], 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image side (default: 256)")
    parser.add_argument("--cutn", type=int, default=32, help="cutouts per step (default: 32)")
    parser.add_argument("--steps", type=int, default=10, help="steps (default: 10)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vqclip-devices-bench-") as tmp:
        rows = [measure([], 2, args.size, args.cutn, args.steps, Path(tmp) / "one"),
                measure(["cpu", "cpu"], 1, args.size, args.cutn, args.steps, Path(tmp) / "two")]
    print(json.dumps(rows) if args.json else "\n".join(map(str, rows)))


if __name__ == "__main__":
    main()
