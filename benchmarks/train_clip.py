"""The CLIP learns: fine-tune the shipped mini CLIP with `vqclip train clip` on a mini-world variant with a colour it has
never seen (a new colour name and RGB, rendered by the world: `world.with_color`), and measure on held-out images:
zero-shot accuracy of the shape's colour (the new one and the old ones; prompts 'a C circle' / 'a C square' /
'a C triangle' averaged, open_clip's zero-shot recipe), and retrieval recall@1 on the held-out split, before and after.
Targets: the new colour from chance to >= 80%, the old colours within 5 points.

Also the throughput of the training (images/s, CPU) against a plain loop written here: the same model and batch
size, images already in memory as tensors, a textbook symmetric cross-entropy, AdamW, fp32.

    python benchmarks/train_clip.py                        # the benchmark (a few minutes on 2 cores)
    python benchmarks/train_clip.py --steps 40 --test 200  # a quick look
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
import torch.nn.functional as F
from PIL import Image

from vqclip.cli import main as vqclip_main
from vqclip.mini import world
from vqclip.train.evaluate import class_embeddings, zero_shot
from vqclip.train.export import load_source
from vqclip.nets.clip import load_clip

NEW, RGB = "pink", (250, 130, 200)
TEMPLATES = ["a {} circle", "a {} square", "a {} triangle"]


def scenes(n: int, seed: int, palette: dict, new_share: float) -> list[world.Scene]:
    """n proper scenes of the variant world; a share `new_share` of them has the new colour as the shape's colour."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        sc = world.sample_scene(rng, colors=palette)
        if rng.random() < new_share:
            s = sc.shapes[0]
            bg = world.other_color(rng, NEW, palette)
            sc = world.Scene(bg, (world.Shape(s.kind, NEW, s.cx, s.cy, s.r),), 1)
        out.append(sc)
    return out


def write_folder(folder: Path, items: list[world.Scene], palette: dict, seed: int) -> None:
    """Each scene as a PNG with its caption (the world's grammar) beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, sc in enumerate(items):
        Image.fromarray(world.render(sc, colors=palette)).save(folder / f"{i:05d}.png")
        (folder / f"{i:05d}.txt").write_text(world.caption(sc, rng))


@torch.no_grad()
def colour_accuracy(clip, items: list[world.Scene], palette: dict) -> dict:
    """Zero-shot accuracy of the shape colour over all colours of the palette: overall, the new one, the old ones."""
    x = torch.stack([clip.transform(Image.fromarray(world.render(sc, colors=palette))) for sc in items])
    img = torch.cat([F.normalize(clip.model.encode_image(x[i:i + 200]).float(), dim=-1) for i in range(0, len(x), 200)])
    names = list(palette)
    res = zero_shot(img, class_embeddings(clip.model, clip.tokenizer, names, TEMPLATES, torch.device("cpu")), names,
                    [sc.shapes[0].color for sc in items])
    old = [sc.shapes[0].color != NEW for sc in items]
    per = res["per_class"]
    n_old = sum(old)
    old_acc = sum(per[c] * sum(1 for sc in items if sc.shapes[0].color == c) for c in per if c != NEW) / n_old
    return {"all": res["accuracy"], "new": per.get(NEW, float("nan")), "old": old_acc}


def plain_loop(clip, folder: Path, steps: int, batch: int, lr: float) -> float:
    """images/s of a textbook loop on the same model: tensors in memory, symmetric CE, AdamW, fp32."""
    files = sorted(folder.glob("*.png"))[:batch * 4]
    x = torch.stack([clip.transform(Image.open(f).convert("RGB")) for f in files])
    t = clip.tokenizer([f.with_suffix(".txt").read_text() for f in files])
    model = clip.model.requires_grad_(True).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    labels = torch.arange(batch)
    t0 = time.perf_counter()
    for s in range(steps):
        i = (s % 4) * batch
        img = F.normalize(model.encode_image(x[i:i + batch]), dim=-1)
        txt = F.normalize(model.encode_text(t[i:i + batch]), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.T
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=1000, help="training scenes")
    p.add_argument("--test", type=int, default=600, help="held-out scenes for the colour accuracy")
    p.add_argument("--new-share", type=float, default=0.25, help="share of training scenes with the new colour")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes and of the training")
    p.add_argument("--plain-steps", type=int, default=10)
    p.add_argument("--json", type=Path, help="write the figures here too")
    p.add_argument("extra", nargs="*", help="extra `vqclip train clip` options (after --)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    palette = world.with_color(NEW, RGB)
    test = scenes(args.test, 10_000 + args.seed, palette, 1 / len(palette))
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        write_folder(data, scenes(args.train, 1 + 100 * args.seed, palette, args.new_share), palette, 2 + args.seed)
        source, _ = load_source("mini", torch.device("cpu"))
        before = colour_accuracy(source, test, palette)
        plain = plain_loop(source, data, args.plain_steps, args.batch, args.lr)
        t0 = time.perf_counter()
        code = vqclip_main(["train", "clip", "--data", str(data), "--from", "mini", "--out", str(run), "--steps",
                            str(args.steps), "--batch", str(args.batch), "--lr", str(args.lr), "--warmup", "10",
                            "--val", "0.1", "--log-every", "25", "--checkpoint-every", str(args.steps),
                            "--threads", str(args.threads), "--seed", str(args.seed), *args.extra])
        wall = time.perf_counter() - t0
        if code != 0:
            raise SystemExit(f"vqclip train clip failed (exit {code})")
        metrics = json.loads((run / "metrics.json").read_text())
        after = colour_accuracy(load_clip(str(run / "clip")), test, palette)
    figures = {"new_colour": NEW, "rgb": RGB, "train_scenes": args.train, "test_scenes": args.test,
               "seed": args.seed, "steps": args.steps, "batch": args.batch, "lr": args.lr, "threads": args.threads,
               "before": before, "after": after,
               "recall_at_1_before": metrics["before"]["image_to_text_r1"],
               "recall_at_1_after": metrics["after"]["image_to_text_r1"],
               "text_to_image_r1_before": metrics["before"]["text_to_image_r1"],
               "text_to_image_r1_after": metrics["after"]["text_to_image_r1"],
               "train_images_per_s": metrics["images_per_s"], "plain_loop_images_per_s": plain,
               "wall_s": wall, "chance": 1 / len(palette),
               "pass": after["new"] >= 0.8 and abs(after["old"] - before["old"]) <= 0.05}
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
