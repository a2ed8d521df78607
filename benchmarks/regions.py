"""Region prompts on the `mini` preset, judged in pixel space: does each half show its own prompt?

Generates 128 x 64 images from two region prompts, "A on a C background:1@left|B on a C background:1@right" (issue
37: "a red square" left and "a green circle" right, and held-out pairs beside it), through `vqclip generate --model
mini` (in-process, the command's own code path), cuts each image into its left and right 64 x 64 halves and judges
each half against its own caption with vqclip.mini.judge (colour, background, shape kind). `--plain` runs the same
texts without their regions, the control: a half is then right only by chance of where each object lands.
Target: >= 80% of halves with the right shape colour.

Region prompts want cutouts that fit in a region: mini's CLIP sees 64-px views, as tall as this canvas, so by default
every cutout would be 64 x 64 and most would straddle both halves (counting for both prompts). The benchmark runs with
`--cutn 16 --set cutouts.min_size=0.5` (sides 32 to 64 px); options after `--` come later and override them.

    python benchmarks/regions.py --threads 1                 # 4 pairs x 2 seeds (~75 s an image on one thread)
    python benchmarks/regions.py --threads 1 --plain         # the control
    python benchmarks/regions.py --seeds 0 --pairs 1 -- --steps 60   # a quick look, extra `vqclip generate` options
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
from mini_quality import split_generate_options, wilson  # noqa: E402

from vqclip.cli import main as vqclip_main  # noqa: E402
from vqclip.mini import judge  # noqa: E402

#: (left object, right object, shared background): the issue's pair first, then held-out ones
PAIRS = [("a red square", "a green circle", "blue"), ("a yellow triangle", "a purple square", "black"),
         ("a green circle", "a red square", "white"), ("an orange circle", "a blue triangle", "white")]
TARGET = 0.80
OPTIONS = ["--cutn", "16", "--set", "cutouts.min_size=0.5"]  # cutouts small enough to lie in one half (see above)


def prompt_of(left: str, right: str, background: str, plain: bool) -> tuple[str, list[str]]:
    """The run's prompt and the two halves' captions."""
    captions = [f"{obj} on a {background} background" for obj in (left, right)]
    if plain:
        return "|".join(captions), captions
    return f"{captions[0]}:1@left|{captions[1]}:1@right", captions


def run(pairs: list[tuple[str, str, str]], seeds: list[int], out: Path, plain: bool, extra: list[str]) -> list[dict]:
    """Generate and judge every pair x seed: one record per half."""
    rows = []
    for i, (left, right, background) in enumerate(pairs):
        prompt, captions = prompt_of(left, right, background, plain)
        for seed in seeds:
            folder = out / f"{i:02d}-s{seed}"
            argv = ["generate", prompt, "--model", "mini", "--size", "128", "64", "--seed", str(seed), "--out",
                    str(folder), "--save-every", "0", "--no-video", "--quiet", *OPTIONS, *extra]
            t0 = time.perf_counter()
            if vqclip_main(argv) != 0:
                raise SystemExit(f"vqclip generate failed for {prompt!r}")
            seconds = time.perf_counter() - t0
            image = Image.open(folder / "final.png").convert("RGB")
            for side, caption, box in (("left", captions[0], (0, 0, 64, 64)), ("right", captions[1], (64, 0, 128, 64))):
                v = judge.judge(image.crop(box), caption)
                rows.append({"pair": i, "seed": seed, "side": side, "caption": caption, "color": v.color,
                             "background": bool(v.background), "shape": v.shape, "seconds": seconds,
                             "found": [v.found_color, v.found_shape, v.found_background]})
                print(f"{'ok ' if v.all else '   '} {seconds:5.1f}s  {side:<5} {caption:<40} seed {seed}: colour "
                      f"{v.found_color}, shape {v.found_shape}, bg {v.found_background}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when fewer than TARGET of the halves show their shape colour."""
    argv, extra = split_generate_options(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--pairs", type=int, default=len(PAIRS), help="only the first N pairs")
    p.add_argument("--plain", action="store_true", help="the control: the same texts without regions")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help="keep the images here (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the records and summary as JSON")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = run(PAIRS[:args.pairs], args.seeds, out, args.plain, extra)
    n = len(rows)
    right = {k: sum(bool(r[k]) for r in rows) for k in ("color", "background", "shape")}
    both = sum(r["color"] and rows[i + 1]["color"] for i, r in enumerate(rows) if r["side"] == "left")
    summary = {"halves": n, "right": right, **{k: right[k] / n for k in right}, "both_colours": both / (n // 2),
               "seconds": sum(r["seconds"] for r in rows[::2]) / (n // 2), "plain": args.plain}
    ci = {k: wilson(right[k], n) for k in right}
    print(f"\n{n} halves ({'no regions' if args.plain else 'region prompts'}): "
          + ", ".join(f"{k} {summary[k]:.0%} ({ci[k][0]:.0%}-{ci[k][1]:.0%})" for k in right)
          + f"; both halves' colours right in {summary['both_colours']:.0%} of images; "
            f"{summary['seconds']:.1f} s per image")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "extra_args": extra, "rows": rows}, indent=2))
    ok = summary["color"] >= TARGET
    print("target met" if ok else f"target missed (>= {TARGET:.0%} of halves with their shape colour)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
