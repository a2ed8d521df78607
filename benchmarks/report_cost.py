"""What recording a run for its report costs: the same mini job through `run_job` with the loss log (losses.csv,
run.json) and with it replaced by a callback that does nothing, alternating, in one process with one model cache;
the log's own cost per step without the run around it (a list append per step, one device read and one atomic
rewrite of losses.csv per saved frame); and the time to make report.html with its plots at the end.

    python benchmarks/report_cost.py                     # mini, 64x64, 100 steps, 4 runs each, CPU
    python benchmarks/report_cost.py --device cuda --n 6 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class NoLog:
    """The loss log's place in the run, doing nothing: the run without the recording."""

    trials = True

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, event) -> None:
        return None

    def flush(self):
        return None

    def speed(self, device, first, last) -> dict:
        return {"from_step": first}


def log_alone(device, steps: int, every: int, terms: int = 4) -> dict:
    """Microseconds per step of `LossLog` fed events of `terms` 0-d device tensors, flushing every `every` steps."""
    import torch

    from vqclip.optim.loop import StepEvent
    from vqclip.runs.losslog import LossLog

    values = {f"t{i}": torch.tensor(0.5, device=device) for i in range(terms)}
    events = [StepEvent(s, steps, 1.0, values) for s in range(steps)]
    with tempfile.TemporaryDirectory() as tmp:
        log = LossLog(Path(tmp), frames=0)
        t0 = time.perf_counter()
        for e in events:
            log(e)
        appends = (time.perf_counter() - t0) / steps
        log = LossLog(Path(tmp), frames=every)
        t0 = time.perf_counter()
        for e in events:
            log(e)
        log.flush()
        with_flushes = (time.perf_counter() - t0) / steps
    return {"append_us_per_step": appends * 1e6, "with_flushes_us_per_step": with_flushes * 1e6, "every": every}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=4, help="runs of each way (alternating)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from vqclip.nets.load import ModelCache
    from vqclip.report.page import write_report
    from vqclip.runs import pipeline
    from vqclip.runs.jobs import build_config

    torch.set_num_threads(args.threads)
    job = {"model": "mini", "prompt": "a red circle on a blue background", "steps": args.steps, "seed": 1,
           "size": [args.size, args.size], "candidates": {"n": 1}, "device": args.device,
           "output": {"progress": False, "video": False, "report": False}}
    cfg = build_config(job)
    cache = ModelCache()
    real = pipeline.LossLog
    with tempfile.TemporaryDirectory() as tmp:
        pipeline.run_job(replace(cfg, output=replace(cfg.output, dir=f"{tmp}/warm")), cache=cache)  # models once
        logged, bare = [], []
        for i in range(args.n):
            for way, times in ((real, logged), (NoLog, bare)) if i % 2 == 0 else ((NoLog, bare), (real, logged)):
                pipeline.LossLog = way
                t0 = time.perf_counter()
                pipeline.run_job(replace(cfg, output=replace(cfg.output, dir=f"{tmp}/{way.__name__}-{i}")), cache=cache)
                times.append(time.perf_counter() - t0)
        pipeline.LossLog = real
        folder = Path(tmp) / "LossLog-0"
        write_report(folder, quiet=True)  # matplotlib imported once, as a run's end does in a fresh process
        t0 = time.perf_counter()
        write_report(folder, quiet=True)
        report_s = time.perf_counter() - t0
    alone = log_alone(torch.device(args.device), 10_000, cfg.output.save_every)
    result = {"device": args.device, "steps": args.steps, "size": args.size, "n": args.n, "logged_s": logged,
              "bare_s": bare, "logged_median_s": statistics.median(logged), "bare_median_s": statistics.median(bare),
              "ratio": statistics.median(logged) / statistics.median(bare), "report_s": report_s, **alone}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"mini {args.size}x{args.size}, {args.steps} steps, {args.device}, {args.n} runs each, alternating:")
        print(f"  with losses.csv + run.json  median {result['logged_median_s']:.2f} s  {[round(x, 2) for x in logged]}")
        print(f"  without                     median {result['bare_median_s']:.2f} s  {[round(x, 2) for x in bare]}")
        print(f"  ratio {result['ratio']:.3f}")
        print(f"  the log alone: {alone['append_us_per_step']:.1f} us/step appending, "
              f"{alone['with_flushes_us_per_step']:.1f} us/step with a flush every {alone['every']} steps")
        print(f"  report.html + plots at the end: {report_s:.2f} s")


if __name__ == "__main__":
    main()
