"""Do flow-stabilised restyles flicker less? The warp error between consecutive output frames of one restyle.

A synthetic clip of the mini world (vqclip/mini/world.py) with KNOWN motion: a shape slides right `--speed` px a
frame over a flat background, so the true backward flow (from each frame to the one before: the shape's pixels
read `speed` px to the left, the background stays) and the true occlusions (the background the shape uncovers)
are known exactly. The same restyle of it (`vqclip restyle CLIP PROMPT --model mini`, same seed and steps per
frame) runs once per setting, and each is scored by

    warp error = mean over consecutive output frames of mean |warp(prev_out, true_flow_back) - next_out|

over the pixels outside the occlusions (RGB in [0, 1]; vqclip.optim.flowwarp.warp): 0 when each output frame is
the one before moved exactly as the input moved. Printed as a markdown table with the ratio to blend-only (issue
38 asks for at most 0.5 from a stabilised restyle).

    python benchmarks/flicker.py                                   # the four settings, 10 frames, 64x64
    python benchmarks/flicker.py --settings blend-0,blend --steps 5 --frames 6   # before the flow settings exist
    python benchmarks/flicker.py --json f.json -- --set cutouts.n=8          # options after -- go to every run
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqclip.cli import main as vqclip_main
from vqclip.files.video import write_mp4
from vqclip.mini.world import Scene, Shape, render, shape_mask
from vqclip.optim.flowwarp import warp

SETTINGS = {  # name: restyle options; the flow ones are restyle.flow's (the previous output warped by the flow)
    "blend-0": ["--blend", "0"],
    "blend": ["--blend", "0.5"],
    "warp-init": ["--blend", "0", "--flow", "dis", "--flow-init", "{init}"],
    "warp-init+term": ["--blend", "0", "--flow", "dis", "--flow-init", "{init}", "--flow-weight", "{weight}"],
}
FLOW_INIT, FLOW_WEIGHT = 1.0, 50.0  # the shares docs/animation.md recommends (the table there tries others)


def options(name: str, init: float = FLOW_INIT, weight: float = FLOW_WEIGHT) -> list[str]:
    """The restyle options of a setting, its flow share and term weight filled in."""
    return [o.format(init=init, weight=weight) for o in SETTINGS[name]]


PROMPT = "a yellow circle on a blue background"  # the mini world's grammar


def moving_clip(frames: int = 10, size: int = 64, speed: int = 2, kind: str = "circle", color: str = "red",
                background: str = "green") -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(frames uint8 [size,size,3], flows [2,size,size] and occlusions bool [size,size] from each frame i >= 1 back
    to frame i-1): a shape of half-extent size/6 sliding right `speed` whole pixels a frame over `background`."""
    r = size / 6
    start = r + 2
    if start + speed * (frames - 1) + r + 2 > size:
        raise ValueError(f"a shape sliding {speed} px a frame leaves a {size} px frame within {frames} frames")
    shapes = [Shape(kind, color, start + speed * i, size / 2, r) for i in range(frames)]
    clip = [render(Scene(background, (s,)), size) for s in shapes]
    flows, occluded = [], []
    for before, now in zip(shapes, shapes[1:]):
        was, is_ = shape_mask(before, size), shape_mask(now, size)
        flow = np.zeros((2, size, size), np.float32)
        flow[0][is_] = -speed  # next(p) = prev(p - speed) on the shape; the background is still
        flows.append(flow)
        occluded.append(was & ~is_)  # background the shape uncovered: prev shows the shape there
    return clip, flows, occluded


def warp_error(prev: np.ndarray, next_: np.ndarray, flow_back: np.ndarray, occluded: np.ndarray) -> float:
    """Mean |warp(prev, flow_back) - next| over the pixels not occluded, for frames [H,W,3] (uint8, or float in
    [0, 1]), the flow [2,H,W] from `next_` to `prev` in pixels and occlusions bool [H,W]."""
    def tensor(x) -> torch.Tensor:  # [1,3,H,W] float64 in [0, 1]
        x = np.asarray(x)
        return torch.from_numpy(x / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)).permute(2, 0, 1)[None]
    moved = warp(tensor(prev), torch.as_tensor(flow_back, dtype=torch.float64)[None])
    diff = (moved - tensor(next_)).abs().mean(1)[0]  # [H,W], mean over the channels
    keep = ~torch.as_tensor(np.asarray(occluded, bool))
    return float(diff[keep].mean())


def clip_error(outputs: list[np.ndarray], flows: list[np.ndarray], occluded: list[np.ndarray]) -> float:
    """The mean warp error over consecutive output frames [H,W,3] of a restyle of the clip."""
    if len(outputs) != len(flows) + 1:
        raise ValueError(f"{len(outputs)} output frames for a clip of {len(flows) + 1}")
    return float(np.mean([warp_error(a, b, f, o) for a, b, f, o in zip(outputs, outputs[1:], flows, occluded)]))


def restyle(clip_path: Path, out: Path, setting: list[str], steps: int, seed: int, size: int, extra: list[str],
            model: str = "mini") -> list[np.ndarray]:
    """One restyle of the clip through `vqclip restyle` (in-process); its output frames (the PNGs, not the video)."""
    argv = ["restyle", str(clip_path), PROMPT, *(["--model", model] if model else []), "--seed", str(seed),
            "--steps", str(steps), "--set", f"size={size}", "--out", str(out), "--no-audio",
            "--no-video", "--quiet", *setting, *extra]
    if vqclip_main(argv) != 0:
        raise SystemExit(f"vqclip restyle failed: {' '.join(argv)}")
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted((out / "frames").glob("*.png"))]


def table(rows: dict[str, float]) -> str:
    """Markdown: setting, warp error, ratio to blend-only (where it ran)."""
    base = rows.get("blend")
    lines = ["| setting | warp error | / blend only |", "|---|---:|---:|"]
    for name, error in rows.items():
        ratio = f"{error / base:.2f}" if base else "-"
        lines.append(f"| {name} | {error:.4f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, float]:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--speed", type=int, default=2, help="pixels the shape slides a frame")
    parser.add_argument("--steps", type=int, default=20, help="steps per frame")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="mini", help="the preset of every run ('': the options after -- say)")
    parser.add_argument("--flow-init", type=float, default=FLOW_INIT, help="restyle.flow_init of the warp settings")
    parser.add_argument("--flow-weight", type=float, default=FLOW_WEIGHT,
                        help="restyle.flow_weight of warp-init+term")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the warp errors here")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {', '.join(unknown)}; use {', '.join(SETTINGS)}")
    clip, flows, occluded = moving_clip(args.frames, args.size, args.speed)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        clip_path = root / "clip.mp4"
        write_mp4(clip, clip_path, 10)
        rows = {}
        for name in names:
            t0 = time.perf_counter()
            outputs = restyle(clip_path, root / name, options(name, args.flow_init, args.flow_weight), args.steps, args.seed, args.size, extra,
                              args.model)
            rows[name] = clip_error(outputs, flows, occluded)
            print(f"{name:<16} warp error {rows[name]:.4f}  ({time.perf_counter() - t0:.1f}s)", flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "extra": extra,
                                         "warp_error": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
