"""Generation quality of the `mini` preset, judged in pixel space (vqclip.mini.judge), not by CLIP.

Runs a fixed set of 24 prompts x 2 seeds through `vqclip generate --model mini` (in-process, the same code path as
the command) and prints the share judged right for shape colour, background colour and single-object shape kind,
plus seconds per image. Targets: >= 90% colour, >= 90% background, >= 70% shape (one object), <= 15 s per image.

    python benchmarks/mini_quality.py                       # the full benchmark
    python benchmarks/mini_quality.py --limit 12 --stride 2 --seeds 0   # a quick look
    python benchmarks/mini_quality.py -- --steps 100 --tv-weight 0.5   # extra `vqclip generate` options
    python benchmarks/mini_quality.py --json b.json --compare a.json -- --tv-weight 40   # paired A/B on the same images

Shares come with a 95% Wilson interval: 48 images pin a share down to about +-14 points, so a setting that gains a
few points on one seed set has shown nothing yet. `--compare` pairs the images of an earlier `--json` run by prompt
and seed and gives the two-sided sign-test p-value of the shape-kind wins against the losses.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vqclip.cli import main as vqclip_main
from vqclip.mini import judge, world

TARGETS = {"color": 0.90, "background": 0.90, "shape": 0.70, "seconds": 15.0}


def prompts() -> list[str]:
    """24 prompts: every colour as shape colour 3 times (once per shape) and as background 3 times."""
    names = list(world.COLORS)
    out = []
    for k, shape in enumerate(world.SHAPES):
        for i, c in enumerate(names):
            b = names[(i + 1 + 2 * k) % len(names)]
            out.append(f"{'an' if c == 'orange' else 'a'} {c} {shape} on {'an' if b == 'orange' else 'a'} {b} background")
    return out


def run(prompt_list: list[str], seeds: list[int], out_dir: Path, extra: list[str]) -> list[dict]:
    """Generate and judge every prompt x seed; one record per image."""
    rows = []
    for i, prompt in enumerate(prompt_list):
        for seed in seeds:
            run_dir = out_dir / f"{i:02d}-s{seed}"
            argv = ["generate", prompt, "--model", "mini", "--seed", str(seed), "--out", str(run_dir),
                    "--save-every", "0", "--no-video", "--quiet", *extra]
            t0 = time.perf_counter()
            code = vqclip_main(argv)
            seconds = time.perf_counter() - t0
            if code != 0:
                raise SystemExit(f"vqclip generate failed (exit {code}) for {prompt!r}")
            v = judge.judge(Image.open(run_dir / "final.png"), prompt)
            rows.append({"prompt": prompt, "seed": seed, "seconds": seconds, "color": v.color,
                         "background": bool(v.background), "shape": v.shape, "found": [v.found_color,
                         v.found_shape, v.found_background], "objects": v.objects, "path": str(run_dir / "final.png")})
            print(f"{'ok ' if v.all else '   '} {seconds:5.1f}s  {prompt:<45} seed {seed}: colour {v.found_color}, "
                  f"shape {v.found_shape} ({v.objects} blobs, {v.largest_share:.0%}), bg {v.found_background}",
                  flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Counts and shares judged right, mean seconds per image (the first image, which loads the models, included)."""
    n = max(1, len(rows))
    right = {k: sum(bool(r[k]) for r in rows) for k in ("color", "background", "shape")}
    return {"images": len(rows), "right": right, **{k: right[k] / n for k in right},
            "all": sum(bool(r["color"] and r["background"] and r["shape"]) for r in rows) / n,
            "seconds": sum(r["seconds"] for r in rows) / n}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a share k/n (sound at 0/n and n/n, unlike the normal approximation)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign-test p-value of `wins` against `losses` (ties dropped), under no difference."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def compare(rows: list[dict], base: list[dict], key: str = "shape") -> dict:
    """Images of this run and an earlier one paired by (prompt, seed): right here only, right there only, p-value."""
    earlier = {(r["prompt"], r["seed"]): bool(r[key]) for r in base}
    pairs = [(bool(r[key]), earlier[(r["prompt"], r["seed"])]) for r in rows if (r["prompt"], r["seed"]) in earlier]
    wins, losses = sum(a and not b for a, b in pairs), sum(b and not a for a, b in pairs)
    return {"pairs": len(pairs), "wins": wins, "losses": losses, "p": sign_test(wins, losses)}


def read_rows(path: Path) -> list[dict]:
    """The image records of an earlier `--json` file; a one-line exit when it is not one."""
    try:
        rows = json.loads(path.read_text())["rows"]
        if not all({"prompt", "seed", "shape"} <= set(r) for r in rows):
            raise KeyError("prompt/seed/shape")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: {path}: not a --json file of this benchmark ({exc.__class__.__name__}: {exc})")
    return rows


def contact_sheet(rows: list[dict], path: Path, cols: int = 8) -> None:
    """All final images in one PNG (2x upscaled), in benchmark order, for looking at."""
    ims = [np.asarray(Image.open(r["path"]).convert("RGB").resize((128, 128), Image.NEAREST)) for r in rows]
    ims += [np.zeros_like(ims[0])] * (-len(ims) % cols)
    grid = np.concatenate([np.concatenate(ims[i:i + cols], 1) for i in range(0, len(ims), cols)], 0)
    Image.fromarray(grid).save(path)


def split_generate_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the benchmark's own options, the `vqclip generate` options after `--`) of a command line."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when a target is missed (so CI can use it)."""
    argv, extra = split_generate_options(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    p.add_argument("--stride", type=int, default=1, help="every K-th prompt (K=2 with --limit 12: all three shapes)")
    p.add_argument("--out", type=Path, default=None, help="keep the images here (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the records and summary as JSON")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--compare", type=Path, default=None, metavar="JSON",
                   help="an earlier run's --json: pair the images by prompt and seed and test the shape-kind difference")
    args = p.parse_args(argv)
    base = read_rows(args.compare) if args.compare else None  # a bad file fails now, not after the run
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.stride < 1 or (args.limit is not None and args.limit < 1):
        raise SystemExit("error: --stride and --limit must be at least 1")
    plist = prompts()[::args.stride][:args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = run(plist, args.seeds, out, extra)
        s = summary(rows)
        if args.out:
            contact_sheet(rows, out / "sheet.png")
        else:  # the temporary folder goes now: keep no paths that point nowhere
            for r in rows:
                r["path"] = None
    n = s["images"]
    ci = {k: wilson(s["right"][k], n) for k in ("color", "background", "shape")}
    print(f"\n{n} images: " + ", ".join(f"{name} {s[k]:.0%} ({ci[k][0]:.0%}-{ci[k][1]:.0%})" for k, name in
                                       (("color", "shape colour"), ("background", "background"),
                                        ("shape", "shape kind (one object)")))
          + f", all three {s['all']:.0%}; {s['seconds']:.1f} s per image (95% intervals in brackets)")
    if args.compare:
        c = compare(rows, base)
        s["compare"] = c
        print(f"against {args.compare}: {c['pairs']} paired images, shape kind right only here {c['wins']}, only "
              f"there {c['losses']}; sign test p = {c['p']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"summary": s, "extra_args": extra, "rows": rows}, indent=2))
    ok = all(s[k] >= TARGETS[k] for k in ("color", "background", "shape")) and s["seconds"] <= TARGETS["seconds"]
    print("targets met" if ok else f"targets missed (targets: {TARGETS})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
