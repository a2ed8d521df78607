"""Do the same jobs still make the same pixels? sha256 of every image a fixed set of jobs writes, before and after.

Runs still, a 2-part story, best of n (candidates.keep=2), zoom, restyle of a tiny generated video, and a run
stopped at a few steps then `vqclip resume`d to more, through `vqclip.cli.main` (in-process, the command's own code
path) on the tiny random test models (tests/tiny.py, seeded) and on `--model mini`, all on one CPU thread. Writes
{job: {image path in its run folder: {"file": sha256 of the PNG file, "pixels": sha256 of its decoded RGB bytes}}};
`--compare A.json` says equal/different per job by the pixels (the file also holds the job's text, which a new
config key changes while every pixel stays the same).

    python benchmarks/same_pixels.py --json /tmp/base.json             # on the old code
    python benchmarks/same_pixels.py --compare /tmp/base.json          # on the new code: every job equal?
    python benchmarks/same_pixels.py --only tiny-still --json a.json   # one job
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/tiny.py writes the tiny models

from vqclip.cli import main as vqclip_main  # noqa: E402

PROMPT = "a red circle on a blue background"
STORY = "a red circle on a blue background ^ a yellow square on a green background"


def tiny_models(folder: Path) -> list[str]:
    """Write the seeded tiny VQGAN and CLIP of the test suite; the CLI options that point at them, 32x32."""
    from tiny import write_clip, write_vqgan

    vq, clip = write_vqgan(folder / "vqgan"), write_clip(folder / "clip")
    return ["--vqgan-config", str(vq[0]), "--vqgan-checkpoint", str(vq[1]), "--clip-model", str(clip[0]),
            "--clip-pretrained", str(clip[1]), "--size", "32", "32", "--cutn", "4"]


def tiny_video(path: Path, n: int = 3, size: tuple[int, int] = (32, 32)) -> Path:
    """A small mp4: a bright square moving right over a blue gradient, n frames."""
    from vqclip.files.video import write_mp4

    w, h = size
    frames = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 2] = np.linspace(0, 200, w, dtype=np.uint8)[None, :]
        f[8:20, 4 + 6 * i: 16 + 6 * i] = (250, 240, 40)
        frames.append(f)
    write_mp4(frames, path, 6)
    return path


def jobs(models: dict[str, list[str]], video: Path) -> dict[str, list[list[str]]]:
    """Job name -> the `vqclip` commands it runs in order; "{out}" is its run folder."""
    out = []
    common = ["--seed", "3", "--threads", "1", "--quiet", "--no-video", "--out", "{out}"]
    for name, opts in models.items():
        steps = ["--steps", "4"] if name == "tiny" else ["--steps", "6", "--size", "32", "32", "--cutn", "4"]
        base = [*opts, *common]
        out += [
            (f"{name}-still", [["generate", PROMPT, *base, *steps, "--save-every", "2"]]),
            (f"{name}-story", [["generate", STORY, *base, *steps]]),
            (f"{name}-bestofn-keep2", [["generate", PROMPT, *base, *steps, "--n", "2", "--candidates", "3",
                                        "--set", "candidates.keep=2", "--set", "candidates.views=4"]]),
            (f"{name}-zoom", [["zoom", PROMPT, *base, "--frames", "3", "--every", "2", "--zoom", "1.1", "--rotate",
                               "3", *steps[2:]]]),
            (f"{name}-restyle", [["restyle", str(video), PROMPT, *base, *steps[2:], "--steps", "2"]]),
            (f"{name}-resume", [["generate", PROMPT, *base, *steps[2:], "--steps", "3", "--set", "state_every=1"],
                                ["resume", "{out}", "--steps", "6", "--threads", "1", "--quiet"]]),
        ]
    return dict(out)


def digest(png: Path) -> dict[str, str]:
    """sha256 of the file and of its decoded RGB pixels (with the size)."""
    image = Image.open(png).convert("RGB")
    pixels = hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()
    return {"file": hashlib.sha256(png.read_bytes()).hexdigest(), "pixels": pixels}


def run_job(commands: list[list[str]], run_dir: Path) -> dict[str, dict[str, str]]:
    """Run one job's commands; the digests of every PNG it wrote (final.png, frames), by path in its folder."""
    for argv in commands:
        argv = [a.replace("{out}", str(run_dir)) for a in argv]
        if vqclip_main(argv) != 0:
            raise SystemExit(f"vqclip failed: {' '.join(argv)}")
    return {str(p.relative_to(run_dir)): digest(p) for p in sorted(run_dir.rglob("*.png"))}


def compare(now: dict, before: dict) -> dict[str, str]:
    """Per job: "equal" when every image's pixels are, "different" (naming the images), or "missing"."""
    verdict = {}
    for job in sorted(set(now) | set(before)):
        if job not in now or job not in before:
            verdict[job] = "missing " + ("now" if job not in now else "before")
            continue
        a, b = now[job], before[job]
        bad = sorted(k for k in set(a) | set(b) if a.get(k, {}).get("pixels") != b.get(k, {}).get("pixels"))
        verdict[job] = "equal" if not bad else "different: " + ", ".join(bad)
    return verdict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=None, help="write the digests here")
    p.add_argument("--compare", type=Path, default=None, metavar="JSON", help="an earlier --json to compare with")
    p.add_argument("--only", nargs="+", default=None, help="only these jobs (names as printed)")
    p.add_argument("--no-mini", action="store_true", help="only the tiny models")
    p.add_argument("--out", type=Path, default=None, help="keep the run folders here (default: temporary)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        models = {"tiny": tiny_models(work / "models")}
        if not args.no_mini:
            models["mini"] = ["--model", "mini"]
        table = jobs(models, tiny_video(work / "input.mp4"))
        result = {}
        for name, commands in table.items():
            if args.only and name not in args.only:
                continue
            result[name] = run_job(commands, work / name)
            print(f"{name:<22} {len(result[name])} images  final {result[name].get('final.png', {}).get('pixels')}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True))
    if args.compare:
        verdict = compare(result, json.loads(args.compare.read_text()))
        for job, v in verdict.items():
            print(f"{job:<22} {v}")
        return 0 if all(v == "equal" for v in verdict.values()) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
