"""Does the held-out judge agree with the truth on mini? And what does judging cost?

24 `mini` runs of held-out prompts and seeds (prompts not in benchmarks/mini_quality.py, seeds from 100 on), some
good (the preset's 100 steps), some bad (3, 10 or 25 steps, or one start instead of six), each with `--judge`. Each
final image is ranked three ways: by the world's ground truth (vqclip.mini.judge, the pixel judge: how many of
colour, background and one-object shape kind are right, 0-3), by the held-out judge's score of it (scores.json) and
by the guide's own score (the guiding CLIP's cosine, scores.json). Prints Spearman's rho of judge and guide against
the truth (target: judge >= 0.7, guide less).

Then the cost: `--pairs` pairs of 100-step runs of one prompt, with and without `--judge`, alternated in this one
process (default save_every: 5), and the time spent inside the scoring itself.

    python benchmarks/judge_agreement.py                 # 24 runs, then 3 timing pairs
    python benchmarks/judge_agreement.py --pairs 0 --json a.json
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from PIL import Image

from vqclip.cli import main as vqclip_main
from vqclip.files.scores import read_scores
from vqclip.mini import judge, world
from vqclip.runs import judging


def ranks(xs: list[float]) -> list[float]:
    """1-based ranks, ties given the mean of the ranks they span."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rho: Pearson's correlation of the (tie-averaged) ranks."""
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sx, sy = math.sqrt(sum((a - mx) ** 2 for a in rx)), math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (sx * sy) if sx and sy else float("nan")


def check_spearman() -> None:
    """Hand examples: no ties, 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60 = 0.8; with a tie, ranks
    (1, 2, 3) against (1.5, 1.5, 3): covariance 1.5 over sqrt(2 * 1.5) = 0.8660; reversed: -1."""
    assert abs(spearman([10, 20, 30, 40], [1, 3, 2, 4]) - 0.8) < 1e-12
    assert abs(spearman([1, 2, 3], [1, 1, 2]) - 1.5 / math.sqrt(3)) < 1e-12
    assert abs(spearman([1, 2, 3, 4], [9, 7, 5, 1]) + 1) < 1e-12


def prompts() -> list[str]:
    """12 held-out prompts: colour pairs and kinds that benchmarks/mini_quality.py does not use (other offsets)."""
    names = list(world.COLORS)
    out = []
    for i in range(12):
        c, b, shape = names[i % 8], names[(i + 4 + i // 8) % 8], world.SHAPES[i % 3]
        out.append(f"{'an' if c == 'orange' else 'a'} {c} {shape} on {'an' if b == 'orange' else 'a'} {b} background")
    return out


# (steps, extra options): good runs and bad ones, two seeds of each prompt; `--steps-scale` shortens them all
RECIPES = [(100, []), (3, []), (25, ["--candidates", "1"]), (10, []), (100, ["--candidates", "1"]), (25, [])]


def truth(path: Path, prompt: str) -> int:
    """The pixel judge's verdict as a number: colour, background and one-object shape kind right, 0-3."""
    v = judge.judge(Image.open(path), prompt)
    return int(v.color) + int(bool(v.background)) + int(v.shape)


def agreement(out: Path, limit: int = 24, scale: float = 1.0) -> list[dict]:
    """The runs, judged; one record per run: truth, the judge's and the guide's score of the final image, the run's
    seconds and the seconds inside the scoring."""
    rows = []
    for i, prompt in enumerate(prompts()):
        for k in range(2):
            if len(rows) >= limit:
                return rows
            steps, extra = RECIPES[(2 * i + k) % len(RECIPES)]
            steps = max(3, round(steps * scale))
            seed = 100 + 7 * i + k
            run_dir = out / f"{i:02d}-{k}"
            before, t0 = INSIDE[0], time.perf_counter()
            code = vqclip_main(["generate", prompt, "--model", "mini", "--seed", str(seed), "--steps", str(steps),
                                "--out", str(run_dir), "--no-video", "--quiet", "--judge", *extra])
            seconds, scoring = time.perf_counter() - t0, INSIDE[0] - before
            if code != 0:
                raise SystemExit(f"vqclip generate failed (exit {code}) for {prompt!r}")
            data = read_scores(run_dir)
            last = max(data["frames"], key=lambda f: f["step"])
            rows.append({"prompt": prompt, "seed": seed, "steps": steps, "extra": extra,
                         "truth": truth(run_dir / "final.png", prompt), "judge": last["judge"], "guide": last["guide"],
                         "seconds": seconds, "scoring_seconds": scoring})
            r = rows[-1]
            print(f"truth {r['truth']}  judge {r['judge']:.3f}  guide {r['guide']:.3f}  {steps:3d} steps "
                  f"{seconds:5.1f} s (scoring {scoring:.2f} s) "
                  f"{' '.join(extra):<14} {prompt} (seed {seed})", flush=True)
    return rows


INSIDE = [0.0]  # seconds spent inside Judging.scored so far (the scoring of frames, scores.json, best.png)


def timed_scoring() -> None:
    """Count the seconds inside `Judging.scored` (in this process) into INSIDE."""
    scored = judging.Judging.scored

    def timed(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return scored(self, *args, **kwargs)
        finally:
            INSIDE[0] += time.perf_counter() - t0

    judging.Judging.scored = timed


def cost(out: Path, pairs: int) -> dict:
    """Alternated 100-step runs with and without --judge; seconds each, and the seconds inside the scoring."""
    start = INSIDE[0]
    walls: dict[str, list[float]] = {"off": [], "on": []}
    for p in range(pairs):
        for mode in ("off", "on") if p % 2 == 0 else ("on", "off"):
            t0 = time.perf_counter()
            code = vqclip_main(["generate", "a red circle on a blue background", "--model", "mini", "--seed", "1",
                                "--out", str(out / f"cost-{p}-{mode}"), "--no-video", "--quiet",
                                *(["--judge"] if mode == "on" else [])])
            walls[mode].append(time.perf_counter() - t0)
            if code != 0:
                raise SystemExit(f"vqclip generate failed (exit {code})")
    inside = [INSIDE[0] - start]
    on, off = sum(walls["on"]) / max(1, pairs), sum(walls["off"]) / max(1, pairs)
    return {"pairs": pairs, "seconds_on": on, "seconds_off": off, "extra_share": (on - off) / off if off else None,
            "scoring_seconds_per_run": inside[0] / max(1, pairs),
            "scoring_share": inside[0] / max(1e-9, sum(walls["on"]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3, help="timing pairs (0: none)")
    p.add_argument("--json", type=Path, help="write the rows and figures here")
    p.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--limit", type=int, default=24, help="runs (default: all 24; fewer: a quick look)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="scale every recipe's steps (at least 3)")
    args = p.parse_args()
    check_spearman()
    timed_scoring()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        rows = agreement(out, args.limit, args.steps_scale)
        truths = [r["truth"] for r in rows]
        figures = {"runs": len(rows), "judge_rho": spearman([r["judge"] for r in rows], truths),
                   "guide_rho": spearman([r["guide"] for r in rows], truths),
                   "scoring_share": sum(r["scoring_seconds"] for r in rows) / sum(r["seconds"] for r in rows)}
        print(f"Spearman against the pixel judge, {len(rows)} runs: held-out judge {figures['judge_rho']:.3f}, "
              f"guide {figures['guide_rho']:.3f}; scoring took {figures['scoring_share']:.1%} of the runs' time",
              flush=True)
        if args.pairs:
            figures["cost"] = cost(out, args.pairs)
            c = figures["cost"]
            print(f"cost: {c['seconds_off']:.1f} s without, {c['seconds_on']:.1f} s with --judge "
                  f"({c['extra_share']:+.1%}); inside the scoring {c['scoring_seconds_per_run']:.2f} s a run "
                  f"({c['scoring_share']:.1%} of the judged runs' time)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "figures": figures}, indent=1))


if __name__ == "__main__":
    main()
