"""What the web page costs a run: the same mini job through `run_job` directly and through the server's run queue
(`vqclip.runs.queue.RunQueue`, with its progress callback making previews as `vqclip ui` does), in one process,
alternating, with one model cache, so both see warm models. Also the time from `vqclip ui` starting to its page
answering (a fresh process: imports, app, bind, first GET /).

    python benchmarks/ui_overhead.py                        # mini, 64x64, 100 steps, 4 runs each
    python benchmarks/ui_overhead.py --steps 50 --n 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def startup_seconds() -> float:
    """Seconds from starting `python -m vqclip ui --port 0` to its page answering GET /."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "vqclip", "ui", "--outputs", tmp], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            line = proc.stdout.readline()
            url = re.search(r"http://\S+/", line).group(0)
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=5) as res:
                        res.read()
                    return time.perf_counter() - t0
                except OSError:
                    time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=4, help="runs of each way (alternating)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from vqclip.nets.load import ModelCache
    from vqclip.runs.jobs import build_config
    from vqclip.runs.pipeline import run_job
    from vqclip.runs.queue import RunQueue

    torch.set_num_threads(args.threads)
    job = {"model": "mini", "prompt": "a red circle on a blue background", "steps": args.steps, "seed": 1,
           "size": [args.size, args.size], "candidates": {"n": 1}, "device": "cpu", "output": {"progress": False}}
    cfg = build_config(job)
    cache = ModelCache()
    with tempfile.TemporaryDirectory() as tmp:
        queue = RunQueue(Path(tmp) / "page", cache)
        run_job(replace(cfg, output=replace(cfg.output, dir=f"{tmp}/warm")), cache=cache)  # models loaded once
        direct, page = [], []
        for i in range(args.n):
            t0 = time.perf_counter()
            run_job(replace(cfg, output=replace(cfg.output, dir=f"{tmp}/direct-{i}")), cache=cache)
            direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            queued = queue.submit(cfg)
            queue.wait(queued)
            page.append(time.perf_counter() - t0)
            assert queued.state == "done", queued.error
        queue.close()
    startup = startup_seconds()
    result = {"steps": args.steps, "size": args.size, "n": args.n, "direct_s": direct, "queue_s": page,
              "direct_median_s": statistics.median(direct), "queue_median_s": statistics.median(page),
              "ratio": statistics.median(page) / statistics.median(direct), "startup_to_page_s": startup}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"mini {args.size}x{args.size}, {args.steps} steps, {args.n} runs each, alternating:")
        print(f"  run_job directly   median {result['direct_median_s']:.2f} s  {[round(x, 2) for x in direct]}")
        print(f"  through the queue  median {result['queue_median_s']:.2f} s  {[round(x, 2) for x in page]}")
        print(f"  ratio {result['ratio']:.3f}   `vqclip ui` start to page answering: {startup:.1f} s")


if __name__ == "__main__":
    main()
