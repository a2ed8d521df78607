"""Do two-part stories on the `mini` preset reach their second part? The last frame judged in pixel space.

Runs a fixed set of two-part stories ("first caption ^ second caption", every attribute changed from one part to
the other; some without a background) x seeds through `vqclip generate --model mini` (in-process, the same code path
as the command) and judges the final image with the mini judge (vqclip.mini.judge) against the second part: shape
colour, background (where the part names one), shape kind (one object), all three; and how many still show the
first part's colours (its shape colour and background). Shares come with a 95% Wilson interval.

    python benchmarks/mini_story.py                                # 8 stories x seeds 0, 1, 60 steps
    python benchmarks/mini_story.py --limit 2 --seeds 0            # a quick look
    python benchmarks/mini_story.py --json b.json --compare a.json -- --set story_fade=0   # paired A/B
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the statistics of mini_quality.py, beside this file
from mini_quality import compare, read_rows, split_generate_options, wilson  # noqa: E402

from vqclip.cli import main as vqclip_main  # noqa: E402
from vqclip.mini import judge  # noqa: E402

STORIES = [
    "a red circle on a blue background ^ a yellow square on a green background",  # the two of issue 35
    "a red circle ^ a blue square",
    "a green triangle on a black background ^ a white circle on a purple background",
    "a blue square on a yellow background ^ a red triangle on a white background",
    "an orange circle on a green background ^ a purple triangle on a red background",
    "a white square on a blue background ^ a black circle on an orange background",
    "a yellow triangle ^ a green circle",
    "a purple circle on a white background ^ an orange square on a black background",
]


def parts(story: str) -> tuple[str, str]:
    """The first and the last part of 'a ^ b'."""
    texts = [p.strip() for p in story.split("^")]
    return texts[0], texts[-1]


def run(stories: list[str], seeds: list[int], steps: int, out_dir: Path, extra: list[str]) -> list[dict]:
    """Generate every story x seed and judge its final image against both parts; one record per image."""
    rows = []
    for i, story in enumerate(stories):
        first, last = parts(story)
        for seed in seeds:
            run_dir = out_dir / f"{i:02d}-s{seed}"
            argv = ["generate", story, "--model", "mini", "--seed", str(seed), "--steps", str(steps), "--out",
                    str(run_dir), "--save-every", "0", "--no-video", "--quiet", *extra]
            t0 = time.perf_counter()
            if vqclip_main(argv) != 0:
                raise SystemExit(f"vqclip generate failed for {story!r}")
            seconds = time.perf_counter() - t0
            image = Image.open(run_dir / "final.png")
            v, before = judge.judge(image, last), judge.judge(image, first)
            rows.append({"prompt": story, "seed": seed, "seconds": seconds, "color": v.color,
                         "background": v.background, "shape": v.shape, "all": v.all,
                         "first": before.color and before.background is not False,
                         "found": [v.found_color, v.found_shape, v.found_background]})
            note = "  (the first part's colours)" if rows[-1]["first"] else ""
            print(f"{'ok ' if v.all else '   '} {seconds:5.1f}s  {story:<80} seed {seed}: colour {v.found_color}, "
                  f"shape {v.found_shape}, bg {v.found_background}{note}", flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Counts judged right for the second part (background: of the stories that name one), and showing the first
    part's colours."""
    with_bg = [r for r in rows if r["background"] is not None]
    right = {k: sum(bool(r[k]) for r in rows) for k in ("color", "shape", "all", "first")}
    right["background"] = sum(bool(r["background"]) for r in with_bg)
    return {"images": len(rows), "with_background": len(with_bg), "right": right,
            "seconds": sum(r["seconds"] for r in rows) / max(1, len(rows))}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the shares (exit 0; it has no target of its own)."""
    argv, extra = split_generate_options(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=60, help="steps of each story (its parts share them)")
    p.add_argument("--limit", type=int, default=None, help="only the first N stories")
    p.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the records and summary as JSON")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--compare", type=Path, default=None, metavar="JSON",
                   help="an earlier run's --json: pair the images by story and seed and test the difference in 'all'")
    args = p.parse_args(argv)
    base = read_rows(args.compare) if args.compare else None  # a bad file fails now, not after the run
    if args.limit is not None and args.limit < 1:
        raise SystemExit("error: --limit must be at least 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    stories = STORIES[:args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = run(stories, args.seeds, args.steps, out, extra)
    s = summary(rows)
    n, nb, r = s["images"], s["with_background"], s["right"]
    shares = [("shape colour", r["color"], n), ("background", r["background"], nb), ("shape kind", r["shape"], n),
              ("all three", r["all"], n), ("the first part's colours", r["first"], n)]
    print(f"\n{n} last frames against their second part: " + ", ".join(
        f"{name} {k}/{m} ({wilson(k, m)[0]:.0%}-{wilson(k, m)[1]:.0%})" for name, k, m in shares)
        + f"; {s['seconds']:.1f} s per story (95% intervals in brackets)")
    if args.compare:
        c = compare(rows, base, key="all")
        s["compare"] = c
        print(f"against {args.compare}: {c['pairs']} paired stories, all three right only here {c['wins']}, only "
              f"there {c['losses']}; sign test p = {c['p']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"summary": s, "extra_args": extra, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
