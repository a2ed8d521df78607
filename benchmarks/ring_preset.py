"""A preset of your own draws a new shape: the mini VQGAN fine-tuned on rings (`vqclip train vqgan`) and the mini CLIP
taught the word "ring" (`vqclip train clip --from` that VQGAN's preset folder, on captioned rings and ordinary mini
scenes so the old words stay), exported as one preset; then ring prompts generated with the old `mini` and the new
preset (in-process `vqclip generate`, the preset's defaults) and judged in pixel space by a ring judge written here.

The ring judge (the mini pixel judge knows filled circles, squares and triangles only): every pixel is classified as
the nearest named colour (vqclip.mini.judge); the prompt's colour forms a ring when its largest 8-connected blob holds
at least `judge.ONE_OBJECT_SHARE` of that colour's pixels (one object), the blob with its holes filled is judged a
circle by the mini judge's own shape test (roundish), and the background-coloured pixels the blob encloses (not
reachable from the border) cover at least `HOLE_SHARE` of that filled disk.

    python benchmarks/ring_preset.py --threads 1                          # train both, generate, judge
    python benchmarks/ring_preset.py --vqgan RUNV --clip RUNC --threads 1  # runs already trained: generate, judge
    python benchmarks/ring_preset.py --vqgan RUNV --recon 24 --recon-only  # can its decoder show a ring at all?
    python benchmarks/ring_preset.py --vqgan RUNV --closure-negatives 300   # a CLIP that also saw broken rings
    python benchmarks/ring_preset.py --vqgan RUNV --generated 32            # a CLIP trained against its generator
    python benchmarks/ring_preset.py --vqgan RUNV --clip RUNC --start disc  # from a disc: does it carve a hole?
    python benchmarks/ring_preset.py --vqgan RUNV --clip RUNC --start image # aimed at a drawn ring's own image
    python benchmarks/ring_preset.py --vqgan RUNV --closure-negatives 600 --one-gap 0.5  # half of them one gap short

`--start disc` starts every ring prompt from a filled disc of the ring's colour (`--init-image`, radius 16, centred)
and `--start circle` asks for "C circle on B" for `CIRCLE_STEPS` (the preset's defaults), then steers the run to the
ring prompt at a gentler learning rate (`steer`: `RING_LR`, `RING_STEPS` more): can a preset that knows the word carve
a ring out of a disc where it cannot close one from strokes? Besides the judge's verdict, each image's
`centre_background` (the share of the central disc, radius 7, in the background colour) says whether a hole opened,
and `annulus_color` (the share of the ring's band, radius 11-16, in the ring's colour) whether the band stayed.
`--start image` takes the text away: each run aims at the CLIP embedding of a drawn ring (`ring_image`, centred,
outer radius 16) by `--image-prompt`, the ring prompt kept at weight 0 only to name the start's background. Can the
generator reach a ring when the aim is a ring's own image, not a caption?

Both presets' `closure` figures (`closure_figures`) ask whether the CLIP can see closure at all: the image-image
cosine of drawn rings and the same rings with one gap, against that of rings and discs, and how often the ring's
prompt scores the ring above its gapped self.

Prints one JSON object: per preset, the share of ring prompts judged a ring (and colour, background) with 95% Wilson
intervals, the paired sign test new vs old, and the same for a few ordinary mini prompts (did the old shapes suffer?).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vqclip.cli import main as vqclip_main
from vqclip.mini import judge, world

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the rings of train_vqgan.py, the statistics of mini_quality
from mini_quality import prompts as mini_prompts, sign_test, wilson  # noqa: E402
import train_vqgan as vq_bench  # noqa: E402
from train_vqgan import RING_WIDTH, SIZE, recon, ring, write_rings  # noqa: E402

HOLE_SHARE = 0.25  # enclosed background / filled disk: a hole at least half the outer radius (a ring, not a dot)
DISC_RADIUS = 16  # px: `--start disc`'s disc, the outer edge of the band `band_shares` looks at
CIRCLE_STEPS, RING_STEPS, RING_LR = 100, 80, 0.02  # `--start circle`: a circle as mini draws it, then steered to a ring
ONE_GAP_DEGREES = (25.0, 60.0)  # `--one-gap`: the single gap of the hardest closure negatives
CLOSURE_PAIRS, CLOSURE_GAP = 32, 40.0  # `closure_figures`: drawn rings and the same rings with one gap of this many degrees


def ring_verdict(image, color: str, background: str) -> dict:
    """Is `image` (see judge.to_array) a `color` ring on `background`? {ring, color, background, hole_share, kind}."""
    cls = judge.classify_pixels(judge.to_array(image))
    border = np.concatenate([cls[:2].ravel(), cls[-2:].ravel(), cls[:, :2].ravel(), cls[:, -2:].ravel()])
    bg = int(np.bincount(border, minlength=len(judge.COLOR_NAMES)).argmax())
    counts = np.bincount(cls.ravel(), minlength=len(judge.COLOR_NAMES))
    counts[bg] = 0
    found = judge.COLOR_NAMES[int(counts.argmax())] if counts.max() >= judge.MIN_AREA else None
    out = {"ring": False, "color": found == color, "background": judge.COLOR_NAMES[bg] == background,
           "hole_share": 0.0, "kind": None}
    target = judge.COLOR_NAMES.index(color)
    mask = cls == target
    if target == bg or mask.sum() < judge.MIN_AREA:
        return out
    labels, areas = judge.label_components(mask)
    blob = labels == int(areas.argmax()) + 1
    filled = judge.fill_holes(blob)
    hole = filled & ~blob & (cls == bg)
    out["hole_share"] = float(hole.sum() / filled.sum())
    out["kind"] = judge.shape_kind(filled)
    out["ring"] = bool(areas.max() / areas.sum() >= judge.ONE_OBJECT_SHARE and out["kind"] == "circle"
                       and out["hole_share"] >= HOLE_SHARE)
    return out


def ring_prompts() -> list[tuple[str, str, str]]:
    """12 (prompt, colour, background): each world colour as the ring's colour once or twice, never its background."""
    names = list(world.COLORS)
    pairs = [(names[i % 8], names[(i + 1 + i // 8) % 8]) for i in range(12)]
    return [(f"{world._a(c)} {c} ring on {world._a(b)} {b} background", c, b) for c, b in pairs]


@contextmanager
def ring_width(width: int):
    """Draw the rings (train_vqgan.py's `ring`, and `broken_ring`) `width` px wide inside the block."""
    vq_bench.RING_WIDTH = width
    try:
        yield
    finally:
        vq_bench.RING_WIDTH = RING_WIDTH


def broken_ring(rng: np.random.Generator, one_gap: float = 0.0) -> tuple[np.ndarray, str, str]:
    """A ring that does not close (image [64,64,3] uint8, colour, background), in the ring's colours and width: a ring
    with 2-4 gaps, one arc of 90-270 degrees, or 4-9 short curved strokes scattered over the background; with
    probability `one_gap`, a ring with a single gap of ONE_GAP_DEGREES (the hardest miss: closed but for one patch)."""
    one = one_gap > 0 and rng.random() < one_gap
    color, bg = rng.choice(list(world.COLORS), 2, replace=False)
    im = Image.new("RGB", (SIZE, SIZE), world.COLORS[bg])
    draw = ImageDraw.Draw(im)
    arc = lambda cx, cy, r, a, b: draw.arc((cx - r, cy - r, cx + r, cy + r), a, b,  # noqa: E731
                                           fill=world.COLORS[color], width=vq_bench.RING_WIDTH)
    if one:
        cx, cy, r = *rng.uniform(24, 40, 2), rng.uniform(12, 20)
        a, gap = rng.uniform(0, 360), rng.uniform(*ONE_GAP_DEGREES)
        arc(cx, cy, r, a + gap, a + 360)
        return np.asarray(im), str(color), str(bg)
    kind = int(rng.integers(3))
    if kind == 2:
        for _ in range(int(rng.integers(4, 10))):
            a = rng.uniform(0, 360)
            arc(*rng.uniform(8, 56, 2), rng.uniform(5, 14), a, a + rng.uniform(40, 110))
    else:
        cx, cy, r = *rng.uniform(24, 40, 2), rng.uniform(12, 20)
        if kind == 1:
            a = rng.uniform(0, 360)
            arc(cx, cy, r, a, a + rng.uniform(90, 270))
        else:
            cuts = np.sort(rng.uniform(0, 360, int(rng.integers(2, 5))))
            for a, b in zip(cuts, np.append(cuts[1:], cuts[0] + 360)):
                if b - a > 40:  # a 40-degree gap around every cut; a piece shorter than that is left out
                    arc(cx, cy, r, a + 20, b - 20)
    return np.asarray(im), str(color), str(bg)


def write_clip_data(folder: Path, rings: int, scenes: int, seed: int, negatives: int = 0,
                    one_gap: float = 0.0) -> None:
    """Captioned PNGs for `vqclip train clip`: rings ("a red ring on a blue background", 1 in 6 without the
    background, as the world's captions), ordinary mini scenes with their world captions, and `negatives` broken
    rings (`broken_ring`, `one_gap` of them with one gap) captioned as the world's fragments ("red fragments on a
    blue background")."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(negatives):
        img, c, b = broken_ring(rng, one_gap)
        Image.fromarray(img).save(folder / f"broken{i:05d}.png")
        (folder / f"broken{i:05d}.txt").write_text(f"{c} fragments on {world._a(b)} {b} background")
    for i in range(rings):
        img, c, b = ring(rng)
        Image.fromarray(img).save(folder / f"ring{i:05d}.png")
        text = f"{world._a(c)} {c} ring" + ("" if rng.integers(6) == 5 else f" on {world._a(b)} {b} background")
        (folder / f"ring{i:05d}.txt").write_text(text)
    for i in range(scenes):
        sc = world.sample_scene(rng)
        Image.fromarray(world.render(sc)).save(folder / f"scene{i:05d}.png")
        (folder / f"scene{i:05d}.txt").write_text(world.caption(sc, rng))


def write_vqgan_data(folder: Path, rings: int, scenes: int, seed: int) -> None:
    """PNGs for `vqclip train vqgan`: rings (train_vqgan.py's) and ordinary mini scenes, so the old shapes stay."""
    write_rings(folder, rings, seed)
    rng = np.random.default_rng(seed + 1)
    for i in range(scenes):
        Image.fromarray(world.render(world.sample_scene(rng))).save(folder / f"scene{i:05d}.png")


def call(argv: list[str]) -> float:
    """Run one vqclip command in-process; its seconds (exit on failure)."""
    t0 = time.perf_counter()
    code = vqclip_main(argv)
    if code != 0:
        raise SystemExit(f"vqclip {' '.join(argv[:2])} failed (exit {code})")
    return time.perf_counter() - t0


def train_vqgan(out: Path, args) -> tuple[Path, float]:
    """`vqclip train vqgan --from mini` on rings and scenes: (the run folder, its wall seconds)."""
    with ring_width(args.ring_width):
        write_vqgan_data(out / "vqdata", args.vq_rings, args.vq_scenes, seed=1)
    run = out / "ringvq"
    return run, call(["train", "vqgan", "--data", str(out / "vqdata"), "--from", "mini", "--out", str(run),
                      "--steps", str(args.vq_steps), "--batch", "8", "--size", "64", "--lr", "3e-4",
                      "--disc-start", str(args.vq_steps), "--disc-ndf", "32", "--perceptual-weight", "0",
                      "--val", "0.1", "--checkpoint-every", str(args.vq_steps), "--grid-every",
                      str(args.vq_steps), "--log-every", "50", "--threads", str(args.threads), "--quiet"])


def train_clip(out: Path, vqgan_run: Path, args) -> tuple[Path, float]:
    """`vqclip train clip --from VQGAN_RUN/vqgan` on captioned rings and scenes: (the run folder, its wall seconds)."""
    with ring_width(args.ring_width):
        write_clip_data(out / "clipdata", args.clip_rings, args.clip_scenes, seed=3, negatives=args.closure_negatives,
                        one_gap=args.one_gap)
    run = out / "ringclip"
    return run, call(["train", "clip", "--data", str(out / "clipdata"), "--from", str(vqgan_run / "vqgan"), "--out",
                      str(run), "--steps", str(args.clip_steps), "--batch", "32", "--lr", "2e-4", "--warmup", "10",
                      "--val", "0.1", "--log-every", "25", "--checkpoint-every", str(args.clip_steps),
                      "--threads", str(args.threads), "--quiet",
                      *(["--generated", str(args.generated)] if args.generated else [])])


def reconstructions(vqgan_run: Path, n: int, out: Path, width: int = RING_WIDTH) -> dict:
    """The ring judge on n held-out rings (train_vqgan.py's seed 2, `width` px wide) reconstructed by the old mini
    VQGAN and by the run's: can the decoder show such a ring at all? Per VQGAN (and the originals): rings judged a
    ring, colour right, mean L1 and each hole share."""
    from vqclip.models.resolve import resolve_preset
    from vqclip.nets.vqgan import load_vqgan
    with ring_width(width):
        labels = write_rings(out / "held", n, seed=2)
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(q).convert("RGB"), np.float32) / 255).permute(2, 0, 1)
                     for q in sorted((out / "held").glob("*.png"))])
    files = resolve_preset("mini", fetch_clip_weights=False)
    models = {"original": None, "old": load_vqgan(files.vqgan_config, files.vqgan_checkpoint),
              "new": load_vqgan(vqgan_run / "vqgan" / "vqgan.yaml", vqgan_run / "vqgan" / "vqgan.safetensors")}
    res = {}
    for name, model in models.items():
        rec = x if model is None else recon(model, x)
        rows = [ring_verdict(img[None], c, b) for img, (c, b) in zip(rec, labels)]
        res[name] = {**shares(rows, ("ring", "color")), "l1": float((rec - x).abs().mean()),
                     "hole_share": [round(r["hole_share"], 2) for r in rows]}
    return res


def disc_image(color: str, background: str, radius: float = DISC_RADIUS) -> Image.Image:
    """A filled `color` disc of `radius` px centred on `background`, SIZE x SIZE, as the world draws a circle:
    `--start disc`'s init image."""
    disc = world.Shape("circle", color, SIZE / 2, SIZE / 2, radius)
    return Image.fromarray(world.render(world.Scene(background, (disc,)), SIZE))


def ring_image(color: str, background: str, radius: float = DISC_RADIUS, start: float = 0.0, end: float = 360.0,
               width: int | None = None) -> Image.Image:
    """A centred `color` ring (outer `radius` px, `width` px wide, default RING_WIDTH) on `background`, SIZE x SIZE,
    drawn from `start` to `end` degrees (less than 360: a ring with a gap): `--start image`'s aim."""
    im = Image.new("RGB", (SIZE, SIZE), world.COLORS[background])
    c = SIZE / 2
    ImageDraw.Draw(im).arc((c - radius, c - radius, c + radius, c + radius), start, end, fill=world.COLORS[color],
                           width=vq_bench.RING_WIDTH if width is None else width)
    return im


def band_shares(image, color: str, background: str) -> dict:
    """Did a hole open in the middle and the band stay? The share of the central disc (radius 7) classified as
    `background` and of the ring band (radius 11-16) classified as `color`, around the image's centre."""
    cls = judge.classify_pixels(judge.to_array(image))
    yy, xx = np.mgrid[:cls.shape[0], :cls.shape[1]]
    d2 = (yy - (cls.shape[0] - 1) / 2) ** 2 + (xx - (cls.shape[1] - 1) / 2) ** 2
    centre, band = d2 <= 7 ** 2, (d2 >= 11 ** 2) & (d2 <= DISC_RADIUS ** 2)
    return {"centre_background": float((cls[centre] == judge.COLOR_NAMES.index(background)).mean()),
            "annulus_color": float((cls[band] == judge.COLOR_NAMES.index(color)).mean())}


def closure_figures(preset: str, pairs: int = CLOSURE_PAIRS, seed: int = 7) -> dict:
    """Can `preset`'s CLIP tell a ring from the same ring with one gap? Over `pairs` drawn rings (`ring_image`: world
    colours, outer radius 12-19 px) and each with one CLOSURE_GAP-degree gap: the mean image-image cosine of ring and
    gapped ring (1: the same to it), of ring and the filled disc of the same outline (a plainly different shape,
    for scale), and the share of pairs where the ring's own prompt scores the ring above the gapped one."""
    from vqclip.models.resolve import resolve_preset
    from vqclip.nets.clip import load_clip
    files = resolve_preset(preset, fetch_clip_weights=False)
    clip = load_clip(files.clip_model, files.clip_pretrained)
    rng = np.random.default_rng(seed)
    gapped, disc, prefers = [], [], []
    for _ in range(pairs):
        c, b = (str(x) for x in rng.choice(list(world.COLORS), 2, replace=False))
        r, a = float(rng.uniform(12, 19)), float(rng.uniform(0, 360))
        images = [ring_image(c, b, r), ring_image(c, b, r, a + CLOSURE_GAP, a + 360), disc_image(c, b, r)]
        with torch.no_grad():
            e = clip.embed_images(images)
            t = clip.encode_text([f"{world._a(c)} {c} ring on {world._a(b)} {b} background"])[0]
        gapped.append(float(e[0] @ e[1]))
        disc.append(float(e[0] @ e[2]))
        prefers.append(bool(e[0] @ t > e[1] @ t))
    return {"pairs": pairs, "gap_degrees": CLOSURE_GAP, "cos_ring_gapped": round(float(np.mean(gapped)), 4),
            "cos_ring_disc": round(float(np.mean(disc)), 4), "prompt_prefers_ring": float(np.mean(prefers))}


def start_items(start: str, out: Path) -> list[tuple[str, str, str, str | None, list[str]]]:
    """The ring prompts as (prompt, colour, background, None, extra options) for `--start` prompt, disc, circle or
    image (the text at weight 0, which still names the start's background; the aim a drawn ring, `ring_image`)."""
    items = []
    for i, (q, c, b) in enumerate(ring_prompts()):
        if start == "image":
            out.mkdir(parents=True, exist_ok=True)
            ring_image(c, b).save(out / f"ring{i:02d}.png")
            items.append((f"{q}:0", c, b, None, ["--image-prompt", str(out / f"ring{i:02d}.png")]))
        elif start == "disc":
            out.mkdir(parents=True, exist_ok=True)
            disc_image(c, b).save(out / f"disc{i:02d}.png")
            items.append((q, c, b, None, ["--init-image", str(out / f"disc{i:02d}.png")]))
        elif start == "circle":  # steered: the ring prompt and a gentler step from CIRCLE_STEPS on
            items.append((q.replace(" ring ", " circle "), c, b, None, [
                "--steps", str(CIRCLE_STEPS + RING_STEPS),
                "--set", f'steer=[{{at: {CIRCLE_STEPS}, prompt: "{q}", lr: {RING_LR}}}]']))
        else:
            items.append((q, c, b, None, []))
    return items


def generate(model: str, items: list[tuple], seeds: list[int], out: Path, extra: list[str]) -> list[dict]:
    """Generate every (prompt, colour, background, mini shape[, its own options]) x seed with `--model model`; one
    judged row each."""
    rows = []
    for i, (prompt, c, b, shape, *own) in enumerate(items):
        for seed in seeds:
            run = out / f"{i:02d}-s{seed}"
            seconds = call(["generate", prompt, "--model", model, "--seed", str(seed), "--out", str(run),
                            "--save-every", "0", "--no-video", "--quiet", *extra, *(own[0] if own else [])])
            img = Image.open(run / "final.png")
            v = {**ring_verdict(img, c, b), **band_shares(img, c, b)}
            if shape is not None:  # an ordinary mini prompt: the mini judge's shape verdict
                v["shape"] = judge.judge(img, prompt).shape
            rows.append({"prompt": prompt, "seed": seed, "seconds": seconds, **v})
            print(f"{model[-12:]:>12} {prompt:<42} s{seed}: ring {v['ring']} (hole {v['hole_share']:.2f}, "
                  f"{v['kind']}), colour {v['color']}, bg {v['background']}", file=sys.stderr, flush=True)
    return rows


def shares(rows: list[dict], keys: tuple[str, ...]) -> dict:
    """Per key: images right, share and its 95% Wilson interval."""
    n = len(rows)
    out = {"images": n}
    for k in keys:
        right = sum(bool(r[k]) for r in rows)
        out[k] = {"right": right, "share": right / max(1, n), "ci95": [round(x, 3) for x in wilson(right, n)]}
    return out


def paired(new: list[dict], old: list[dict], key: str) -> dict:
    """Images paired by (prompt, seed): right with the new preset only, with the old only, sign-test p."""
    wins = sum(bool(a[key]) and not b[key] for a, b in zip(new, old))
    losses = sum(bool(b[key]) and not a[key] for a, b in zip(new, old))
    return {"wins": wins, "losses": losses, "p": sign_test(wins, losses)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vqgan", type=Path, help="a `vqclip train vqgan` run already trained")
    p.add_argument("--clip", type=Path, help="a `vqclip train clip --from VQGAN/vqgan` run already trained")
    p.add_argument("--vq-steps", type=int, default=320)
    p.add_argument("--vq-rings", type=int, default=160)
    p.add_argument("--vq-scenes", type=int, default=80)
    p.add_argument("--clip-steps", type=int, default=80)
    p.add_argument("--clip-rings", type=int, default=300)
    p.add_argument("--clip-scenes", type=int, default=700)
    p.add_argument("--closure-negatives", type=int, default=0,
                   help="broken rings, arcs and strokes captioned as fragments in the CLIP's data")
    p.add_argument("--one-gap", type=float, default=0.0,
                   help="the share of the closure negatives that are rings with a single gap (the hardest miss)")
    p.add_argument("--generated", type=int, default=0,
                   help="train the CLIP with a pool of N generator negatives (`vqclip train clip --generated N`)")
    p.add_argument("--recon", type=int, default=0, help="first judge N held-out rings through both VQGANs")
    p.add_argument("--ring-width", type=int, default=RING_WIDTH, help="the training rings' width in pixels")
    p.add_argument("--recon-width", type=int, default=RING_WIDTH, help="--recon's rings' width in pixels")
    p.add_argument("--recon-only", action="store_true", help="stop after --recon's figures")
    p.add_argument("--start", choices=("prompt", "disc", "circle", "image"), default="prompt",
                   help="ring prompts from the preset's start (prompt), from a disc of their colour (disc), from "
                        "a circle the run draws first and is then steered to the ring (circle), or aimed at a drawn "
                        "ring's image instead of the text (image)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--ordinary", type=int, default=6, help="ordinary mini prompts (circles, squares, triangles)")
    p.add_argument("--old-json", type=Path, help="an earlier run's --json: take the old preset's images from it")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="keep the runs and images here (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the figures here too")
    p.add_argument("extra", nargs="*", help="extra `vqclip generate` options (after --)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ordinary = [(q, *(lambda a: (a.color, a.background, a.shape))(world.parse_caption(q)))
                for q in mini_prompts()[::4][:args.ordinary]]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        wall = {}
        runv, runc = args.vqgan, args.clip
        if runv is None:
            runv, wall["vqgan_s"] = train_vqgan(out, args)
        recons = reconstructions(runv, args.recon, out / "recon", args.recon_width) if args.recon else None
        if args.recon_only:
            print(json.dumps({"reconstructed_rings": recons}, indent=1))
            return 0
        if runc is None:
            runc, wall["clip_s"] = train_clip(out, runv, args)
        new_model = str(runc / "clip")
        with ring_width(args.ring_width):
            rings = start_items(args.start, out / "discs")
        earlier = json.loads(args.old_json.read_text()) if args.old_json else {}
        if earlier and earlier.get("start", "prompt") != args.start:
            raise SystemExit(f"{args.old_json} was run with --start {earlier.get('start', 'prompt')}, not "
                             f"{args.start}: give the same --start, or leave out --old-json")
        res = {"old": earlier["rows"]["old"]} if earlier else {}
        for name, model in (("old", "mini"), ("new", new_model)):
            if name in res:
                continue
            res[name] = {"rings": generate(model, rings, args.seeds, out / name / "rings", args.extra),
                         "ordinary": generate(model, ordinary, args.seeds, out / name / "ordinary", args.extra)}
        with ring_width(args.ring_width):
            closure = {"old": closure_figures("mini"), "new": closure_figures(new_model)}
        vq_metrics = json.loads((runv / "metrics.json").read_text())
        clip_metrics = json.loads((runc / "metrics.json").read_text())
    figures = {
        "ring_prompts": len(rings), "ordinary_prompts": len(ordinary), "seeds": args.seeds, "hole_share": HOLE_SHARE,
        "vq_steps": vq_metrics["steps"], "clip_steps": clip_metrics["steps"], "old_json": str(args.old_json or ""),
        "closure_negatives": args.closure_negatives, "one_gap": args.one_gap, "generated": args.generated,
        "ring_width": args.ring_width, "closure": closure,
        "start": args.start, **{f"{name}_bands": {k: round(float(np.mean([r[k] for r in res[name]["rings"]])), 3)
                                                for k in ("centre_background", "annulus_color")} for name in res
                         if all("centre_background" in r for r in res[name]["rings"])},
        "reconstructed_rings": recons,
        "threads": args.threads, "generate_options": args.extra, "train_wall": wall,
        "vqgan_held_out_l1": [vq_metrics["before"]["l1"], vq_metrics["after"]["l1"]],
        "clip_recall_at_1": [clip_metrics["before"]["image_to_text_r1"], clip_metrics["after"]["image_to_text_r1"]],
        **{f"{name}_rings": shares(res[name]["rings"], ("ring", "color", "background")) for name in res},
        "rings_new_vs_old": {k: paired(res["new"]["rings"], res["old"]["rings"], k) for k in ("ring", "color")},
        **{f"{name}_ordinary": shares(res[name]["ordinary"], ("shape", "color", "background")) for name in res},
        "ordinary_new_vs_old": paired(res["new"]["ordinary"], res["old"]["ordinary"], "shape"),
        "seconds_per_image": {name: float(np.mean([r["seconds"] for r in res[name]["rings"]])) for name in res},
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps({**figures, "rows": res}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
