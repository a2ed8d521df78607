"""vqclip against the textbook loop on identical settings, in alternating subprocesses (one process per run, so
each peak RSS is its own); prints a markdown table and writes every raw result as JSON.

    python benchmarks/compare.py --cases 128:8,256:16,512:16 --rounds 2 --threads 1 --out benchmarks/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def command(impl: str, size: int, cutn: int, args: argparse.Namespace, flops: bool) -> list[str]:
    """The subprocess command line of one run."""
    common = ["--size", str(size), "--cutn", str(cutn), "--steps", str(args.steps), "--warmup", str(args.warmup),
              "--threads", str(args.threads), "--device", args.device, "--json"]
    if not flops:
        common.append("--no-flops")
    if impl == "textbook":
        return [sys.executable, str(ROOT / "benchmarks" / "textbook_loop.py"), *common]
    extra = ["--precision", args.precision, "--memory", args.memory] + (["--compile"] if args.compile else [])
    entry = "import sys; from vqclip.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", entry, "bench", "--random-weights", *common, *extra]


def run_one(impl: str, size: int, cutn: int, args: argparse.Namespace, flops: bool) -> dict:
    """Run one benchmark subprocess and return its JSON result (plus the load average when it ended)."""
    proc = subprocess.run(command(impl, size, cutn, args, flops), cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{impl} {size}x{size} cutn {cutn} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["loadavg"] = os.getloadavg()[0]
    return result


def summary(runs: list[dict]) -> dict:
    """Pooled median s/step over all runs' timed steps, median peak memory, FLOPs from the run that counted them."""
    steps = [t for r in runs for t in r["step_s"]]
    cpu = [t for r in runs for t in r["cpu_s"]]
    gflop = next((r["gflop_per_step"] for r in runs if r["gflop_per_step"]), None)
    return {"median_s": statistics.median(steps), "n_steps": len(steps), "median_cpu_s": statistics.median(cpu),
            "peak_gib": statistics.median(r["peak_mem_bytes"] for r in runs) / 2**30, "gflop": gflop,
            "precision": runs[0]["precision"], "options": runs[0].get("options", {}),
            "load": statistics.mean(r["loadavg"] for r in runs)}


def table(results: dict) -> str:
    """Markdown rows: one per case, vqclip vs textbook."""
    lines = ["| size | cutn | textbook s/step | vqclip s/step | time ratio | textbook CPU s/step | vqclip CPU s/step | "
             "CPU ratio | textbook peak RSS | vqclip peak RSS | memory ratio | GFLOP/step | vqclip GFLOP/s | steps | "
             "load avg |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, pair in results.items():
        if "vqclip" not in pair or "textbook" not in pair:
            continue
        v, t = summary(pair["vqclip"]), summary(pair["textbook"])
        size, cutn = key.split(":")
        gflop = v["gflop"] or t["gflop"]
        lines.append(
            f"| {size}² | {cutn} | {t['median_s']:.2f} | {v['median_s']:.2f} ({v['precision']}) | "
            f"{v['median_s'] / t['median_s']:.2f} | {t['median_cpu_s']:.2f} | {v['median_cpu_s']:.2f} | "
            f"{v['median_cpu_s'] / t['median_cpu_s']:.2f} | {t['peak_gib']:.2f} GiB | {v['peak_gib']:.2f} GiB | "
            f"{v['peak_gib'] / t['peak_gib']:.2f} | {gflop or 0:.0f} | {gflop / v['median_s'] if gflop else 0:.1f} | "
            f"{t['n_steps']}+{v['n_steps']} | {(v['load'] + t['load']) / 2:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="128:8,256:16,512:16", help="size:cutn,...")
    p.add_argument("--rounds", type=int, default=2, help="alternating runs of each implementation per case")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--memory", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the raw results (updated after each run)")
    args = p.parse_args(argv)
    results: dict = json.loads(args.out.read_text()) if args.out and args.out.is_file() else {}
    for case in args.cases.split(","):
        size, cutn = (int(x) for x in case.split(":"))
        pair = results.setdefault(case, {})
        for rnd in range(args.rounds):
            order = ("vqclip", "textbook") if rnd % 2 == 0 else ("textbook", "vqclip")
            for impl in order:
                t0 = time.time()
                r = run_one(impl, size, cutn, args, flops=rnd == 0)
                pair.setdefault(impl, []).append(r)
                print(f"{case} round {rnd} {impl}: {r['median_s']:.2f} s/step ({r['median_cpu_s']:.2f} CPU s), {r['peak_mem_bytes'] / 2**30:.2f} GiB "
                      f"({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
                if args.out:
                    tmp = args.out.with_suffix(".tmp")
                    tmp.write_text(json.dumps(results, indent=1))
                    os.replace(tmp, args.out)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
