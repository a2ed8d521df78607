"""Generation quality of the `mini` preset, judged in pixel space (vqclip.mini.judge), not by CLIP.

Runs a fixed set of 24 prompts x 2 seeds through `vqclip generate --model mini` (in-process, the same code path as
the command) and prints the share judged right for shape colour, background colour and single-object shape kind,
plus seconds per image. Targets: >= 90% colour, >= 90% background, >= 70% shape (one object), <= 15 s per image.

    python benchmarks/mini_quality.py                       # the full benchmark
    python benchmarks/mini_quality.py --limit 12 --stride 2 --seeds 0   # a quick look
    python benchmarks/mini_quality.py -- --steps 100 --tv-weight 0.5   # extra `vqclip generate` options
"""
from __future__ import annotations

import argparse
import json
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
    """Shares judged right and mean seconds per image (the first image, which loads the models, included)."""
    return {"images": len(rows), **{k: float(np.mean([r[k] for r in rows])) for k in ("color", "background", "shape")},
            "all": float(np.mean([r["color"] and r["background"] and r["shape"] for r in rows])),
            "seconds": float(np.mean([r["seconds"] for r in rows]))}


def contact_sheet(rows: list[dict], path: Path, cols: int = 8) -> None:
    """All final images in one PNG (2x upscaled), in benchmark order, for looking at."""
    ims = [np.asarray(Image.open(r["path"]).convert("RGB").resize((128, 128), Image.NEAREST)) for r in rows]
    ims += [np.zeros_like(ims[0])] * (-len(ims) % cols)
    grid = np.concatenate([np.concatenate(ims[i:i + cols], 1) for i in range(0, len(ims), cols)], 0)
    Image.fromarray(grid).save(path)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when a target is missed (so CI can use it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    p.add_argument("--stride", type=int, default=1, help="every K-th prompt (K=2 with --limit 12: all three shapes)")
    p.add_argument("--out", type=Path, default=None, help="keep the images here (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the records and summary as JSON")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    plist = prompts()[::args.stride][:args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = run(plist, args.seeds, out, extra)
        s = summary(rows)
        if args.out:
            contact_sheet(rows, out / "sheet.png")
    print(f"\n{s['images']} images: shape colour {s['color']:.0%}, background {s['background']:.0%}, "
          f"shape kind (one object) {s['shape']:.0%}, all three {s['all']:.0%}; {s['seconds']:.1f} s per image")
    if args.json:
        args.json.write_text(json.dumps({"summary": s, "extra_args": extra, "rows": rows}, indent=2))
    ok = all(s[k] >= TARGETS[k] for k in ("color", "background", "shape")) and s["seconds"] <= TARGETS["seconds"]
    print("targets met" if ok else f"targets missed (targets: {TARGETS})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
