"""8 mini jobs (64², one start instead of the preset's best of 6, 30 steps; seeds 1-8) run by `vqclip run FILE` in
one process (one thread, and two) against `vqclip run FILE --ray` on a local Ray with 2 CPUs (two workers of one
thread, each loading the mini models once), side by side, from the same job file; wall time from the command's start
to its end (Ray's start and the workers' torch import included) and whether the final images are pixel-equal.

    python benchmarks/ray_jobs.py              # 8 jobs, 30 steps
    python benchmarks/ray_jobs.py --jobs 4 --steps 20 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["a red circle", "a blue square", "a green circle", "a red square"]


def timed(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8, help="how many jobs (default: 8)")
    parser.add_argument("--steps", type=int, default=30, help="steps per job (default: 30)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vqclip-ray-bench-") as tmp:
        tmp = Path(tmp)
        job = {"model": "mini", "steps": args.steps, "candidates": {"n": 1}, "threads": 1,
               "output": {"video": False, "progress": False},
               "jobs": [{"prompt": PROMPTS[i % 4], "seed": i + 1, "output": {"dir": f"job{i}"}}
                        for i in range(args.jobs)]}
        (tmp / "jobs.yaml").write_text(yaml.safe_dump(job))
        for name in ("plain", "ray"):
            (tmp / name).mkdir()
        # `threads: 1` in both, so the images can be compared bit for bit; the plain run then uses one core
        plain = timed([sys.executable, "-m", "vqclip", "run", str(tmp / "jobs.yaml")], tmp / "plain")
        ray = timed([sys.executable, "-m", "vqclip", "run", str(tmp / "jobs.yaml"), "--ray"], tmp / "ray")
        job["threads"] = 2  # the plain run on both cores, images not compared
        (tmp / "jobs2.yaml").write_text(yaml.safe_dump(job))
        (tmp / "plain2").mkdir()
        plain2 = timed([sys.executable, "-m", "vqclip", "run", str(tmp / "jobs2.yaml")], tmp / "plain2")
        equal = all(np.array_equal(np.asarray(Image.open(tmp / "plain" / f"job{i}" / "final.png")),
                                   np.asarray(Image.open(tmp / "ray" / f"job{i}" / "final.png")))
                    for i in range(args.jobs))
    figures = {"jobs": args.jobs, "steps": args.steps, "cpus": os.cpu_count(), "plain_1_thread_s": round(plain, 1),
               "plain_2_threads_s": round(plain2, 1), "ray_2_workers_s": round(ray, 1), "pixel_equal": equal}
    if args.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k:>20}: {v}")


if __name__ == "__main__":
    main()
