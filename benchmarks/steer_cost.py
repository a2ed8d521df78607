"""What steering costs a run (issue 39): the it/s of the same mini job with and without a `Steering` attached and
never used, alternating in one process with warm models; and the latency of a steer: from `steer()`, sent from
another thread at a random moment of a step, to the start of the step that takes it (in steps and milliseconds; a
steer must cost no more than one step). lr steers change only the learning rate; prompt steers also rebuild the
objective (the new prompt is embedded), which the taking step pays for.

    python benchmarks/steer_cost.py                       # mini, 64x64, 60 steps, 6 runs each way, 20 steers each
    python benchmarks/steer_cost.py --steps 30 --n 6 --json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ("a red circle on a blue background", "a yellow circle on a blue background")


def timed(cfg, models, steering=None) -> float:
    """Steps per second of one run in memory, timed from its first step to its last (the objective's build apart)."""
    from vqclip.runs.pipeline import generate

    times = []
    generate(cfg, models, [lambda e: times.append(time.perf_counter())], steering=steering)
    return (len(times) - 1) / (times[-1] - times[0])


def latencies(cfg, models, key: str, count: int, seed: int) -> list[tuple[int, float, float]]:
    """(steps, ms, step ms) of `count` steers of `key` sent by another thread at random moments of the run's steps:
    steps from the step running when it was sent to the one that took it, ms from `steer()` to its taking, and the
    ms of the step it was sent in (the wait is the rest of that step, so ms / step ms stays below 1)."""
    from vqclip.optim.steer import Steering
    from vqclip.runs.pipeline import generate

    steering, rng = Steering(), random.Random(seed)
    taken, sent, ends = [], [], []
    steering.on_record = lambda entries: taken.append((time.perf_counter(), entries[-1]["at"]))
    stepped = threading.Event()

    def on_step(event) -> None:
        ends.append((event.step, time.perf_counter()))
        stepped.set()

    def send() -> None:
        for i in range(count):
            stepped.wait(30)
            stepped.clear()
            step_time = ends[-1][1] - ends[-2][1] if len(ends) > 1 else 0.05
            time.sleep(rng.uniform(0, step_time))  # somewhere inside the step that is running
            running = ends[-1][0] + 1
            change = {"lr": cfg.optimizer.lr * (0.5 + rng.random())} if key == "lr" else {"prompt": PROMPTS[i % 2]}
            try:
                t = time.perf_counter()
                steering.steer(**change)
            except Exception:  # the run ended: no more steps to take it
                return
            sent.append((t, running))
            stepped.wait(30)  # one steer per step: each is timed alone
            stepped.clear()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    generate(cfg, models, [on_step], steering=steering)
    sender.join(5)
    end = dict(ends)  # step -> when its update ended
    own = [1000 * (end[running] - end[running - 1]) for _, running in sent]  # the step each steer was sent in
    return [(at - running, 1000 * (t_take - t_sent), ms)
            for (t_sent, running), (t_take, at), ms in zip(sent, taken, own)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=6, help="runs of each way, alternating (at least 6)")
    p.add_argument("--steers", type=int, default=20, help="steers of each kind timed for the latency")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from vqclip.nets.load import load_models
    from vqclip.optim.steer import Steering
    from vqclip.runs.jobs import build_config

    torch.set_num_threads(args.threads)
    cfg = build_config({"model": "mini", "prompt": PROMPTS[0], "steps": args.steps, "seed": 1, "device": "cpu",
                        "size": [args.size, args.size], "candidates": {"n": 1}, "threads": args.threads,
                        "output": {"progress": False}})
    models = load_models(cfg, torch.device("cpu"))
    timed(replace(cfg, steps=5), models)  # warm-up
    plain, steered = [], []
    for i in range(max(args.n, 6)):  # alternating, the order flipped each round
        for way in ((plain, None), (steered, Steering())) if i % 2 == 0 else ((steered, Steering()), (plain, None)):
            way[0].append(timed(cfg, models, way[1]))
    long = replace(cfg, steps=max(args.steps, 2 * args.steers + 4))
    lat = {key: latencies(long, models, key, args.steers, seed) for seed, key in enumerate(("lr", "prompt"))}
    out = {"size": args.size, "steps": args.steps, "threads": args.threads, "torch": torch.__version__,
           "plain_it_s": plain, "steered_it_s": steered,
           "plain_median": statistics.median(plain), "steered_median": statistics.median(steered),
           "ratio": statistics.median(steered) / statistics.median(plain),
           "latency": {key: {"steps": [s for s, _, _ in v], "ms": [m for _, m, _ in v], "step_ms": [x for _, _, x in v],
                             "max_steps": max(s for s, _, _ in v), "median_ms": statistics.median(m for _, m, _ in v),
                             "max_ms": max(m for _, m, _ in v), "median_step_ms": statistics.median(x for *_, x in v),
                             "max_share": max(m / x for _, m, x in v)} for key, v in lat.items()}}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"mini {args.size}x{args.size}, {args.steps} steps, {len(plain)} runs each way, alternating, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print(f"  no Steering:        {out['plain_median']:.2f} it/s  (runs: {', '.join(f'{x:.2f}' for x in plain)})")
    print(f"  Steering, unused:   {out['steered_median']:.2f} it/s  (runs: {', '.join(f'{x:.2f}' for x in steered)})")
    print(f"  ratio:              {out['ratio']:.3f}")
    for key, v in out["latency"].items():
        print(f"  {key} steer latency: at most {v['max_steps']} step(s); {v['median_ms']:.0f} ms median, "
              f"{v['max_ms']:.0f} ms max; at most {v['max_share']:.2f} of the step it was sent in (median step "
              f"{v['median_step_ms']:.0f} ms; {len(v['ms'])} steers)")


if __name__ == "__main__":
    main()
