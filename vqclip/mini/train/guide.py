"""Train the mini preset's guide (`vqclip.nets.guide`): a small CNN that tells circles, squares and triangles of the mini
world from near misses, seen through the mini VQGAN. Generation adds its cross-entropy for the kind the prompt names,
which pulls lumpy outlines towards clean ones where CLIP (patch 8) cannot tell them apart (MODEL_CARD.md).

Near misses, all labelled '_none': outlines moved by a smooth random field (lumpy), the world's irregular blobs,
rectangles (a square stretched along one axis), shapes cut by the canvas border and the world's copies/fragments.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from vqclip.mini import WEIGHTS_DIR, world
from vqclip.mini.train.adversarial import reconstruct
from vqclip.mini.train.batches import to_tensor
from vqclip.mini.train.export import export_fp16
from vqclip.nets.device import native_bf16
from vqclip.nets.guide import Guide, GuideSpec
from vqclip.nets.vqgan import load_vqgan
from vqclip.optim.augments import build_augments
from vqclip.optim.cutouts import add_noise

log = logging.getLogger("vqclip")

SPEC = GuideSpec(labels=(*world.SHAPES, "_none"), widths=(32, 32, 64, 64, 128, 128), strides=(1, 2, 1, 2, 1, 2))
NONE = len(world.SHAPES)
Draw = Callable[[np.random.Generator], tuple[np.ndarray, int]]  # one training image (uint8 [64,64,3]), its label
#: share of each near miss in a batch; the rest are proper scenes
NEAR_MISSES = {"lumpy": 0.15, "blob": 0.08, "rectangle": 0.08, "clipped": 0.08, "copies": 0.06}


def _canvas(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A flat canvas in a random background colour, and a different colour for its shape."""
    color = list(world.COLORS)[int(rng.integers(len(world.COLORS)))]
    img = np.empty((world.SIZE, world.SIZE, 3), np.uint8)
    img[:] = world.COLORS[world.other_color(rng, color)]
    return img, color


def lumpy_scene(rng: np.random.Generator, amp: tuple[float, float] = (0.15, 0.3)) -> np.ndarray:
    """A world shape whose outline is moved by a smooth random field of 15-30% of its half-extent."""
    sh = world.sample_scene(rng).shapes[0]
    img, color = _canvas(rng)
    y, x = world.pixel_centres(world.SIZE, world.SIZE)
    g = int(rng.integers(3, 7))
    field = F.interpolate(torch.from_numpy(rng.normal(size=(1, 2, g, g))).float(), size=(world.SIZE, world.SIZE),
                          mode="bicubic", align_corners=True)[0].numpy()
    field *= sh.r * rng.uniform(*amp) / np.abs(field).max()
    img[world.inside(sh.kind, x + field[0] - sh.cx, y + field[1] - sh.cy, sh.r)] = world.COLORS[color]
    return img


def rectangle_scene(rng: np.random.Generator) -> np.ndarray:
    """An upright rectangle, one side 1.4-2.2 times the other: not a square."""
    img, color = _canvas(rng)
    r = float(rng.uniform(7, 16))
    rx, ry = (r, r * rng.uniform(1.4, 2.2)) if rng.random() < 0.5 else (r * rng.uniform(1.4, 2.2), r)
    rx, ry = min(rx, 30.0), min(ry, 30.0)
    cx, cy = rng.uniform(rx + 1, world.SIZE - rx - 1), rng.uniform(ry + 1, world.SIZE - ry - 1)
    y, x = world.pixel_centres(world.SIZE, world.SIZE)
    img[(np.abs(x - cx) <= rx) & (np.abs(y - cy) <= ry)] = world.COLORS[color]
    return img


def clipped_scene(rng: np.random.Generator) -> np.ndarray:
    """A world shape whose centre sits near an edge, so that 25-60% of its extent is cut off by the border."""
    img, color = _canvas(rng)
    kind = world.SHAPES[int(rng.integers(len(world.SHAPES)))]
    r = float(rng.uniform(9, 22))
    inset = r * rng.uniform(-0.2, 0.5)  # centre this far inside the edge (negative: outside)
    along = rng.uniform(r, world.SIZE - r)
    edge = int(rng.integers(4))
    cx, cy = [(inset, along), (world.SIZE - inset, along), (along, inset), (along, world.SIZE - inset)][edge]
    y, x = world.pixel_centres(world.SIZE, world.SIZE)
    img[world.inside(kind, x - cx, y - cy, r)] = world.COLORS[color]
    return img


#: how each near miss of NEAR_MISSES is drawn
NEAR_MISS_SCENES = {"lumpy": lumpy_scene, "blob": lambda rng: world.render(world.sample_blob(rng)),
                    "rectangle": rectangle_scene, "clipped": clipped_scene,
                    "copies": lambda rng: world.render(world.sample_negative(rng))}


def sample(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One training image (uint8 [64,64,3]) and its label index."""
    u, edge = rng.random(), 0.0
    for name, share in NEAR_MISSES.items():
        edge += share
        if u < edge:
            return NEAR_MISS_SCENES[name](rng), NONE
    scene = world.sample_scene(rng)
    return world.render(scene), world.SHAPES.index(scene.shapes[0].kind)


def batch(rng: np.random.Generator, n: int, vqgan, draw: Optional[Draw] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n images drawn by `draw` (default: `sample`) through the mini VQGAN, as generation shows them, and their
    labels; the VQGAN under bf16 autocast where the CPU does bf16 in hardware (faster), else in fp32."""
    imgs, labels = zip(*((draw or sample)(rng) for _ in range(n)))
    return reconstruct(vqgan, to_tensor(np.stack(imgs)), native_bf16("cpu")), torch.tensor(labels)


def fit_step(model: Guide, opt: torch.optim.Optimizer, sched, augment, x: torch.Tensor, y: torch.Tensor
             ) -> torch.Tensor:
    """One training step on images x [B,3,H,W] in [0,1] and labels y [B], seen as generation scores them (affine +
    noise views), label-smoothed cross-entropy; returns the loss (detached, not synced)."""
    loss = F.cross_entropy(model(add_noise(augment(x), 0.1)), y, label_smoothing=0.05)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.detach()


def held_out_figures(model: Guide, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The guide's accuracy on held-out images x [N,3,H,W] and labels y [N], overall and per label (eval mode)."""
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1)
    return {"held_out_accuracy": float((pred == y).float().mean()),
            "held_out_by_label": {label: float((pred[y == i] == i).float().mean())
                                  for i, label in enumerate(model.labels)}}


def train_guide(out_dir: Path, seed: int = 0, steps: int = 1200, batch_size: int = 64, lr: float = 2e-3,
                held_out: int = 400, spec: Optional[GuideSpec] = None, draw: Optional[Draw] = None) -> dict:
    """Train from scratch and write guide.json + guide.safetensors (fp16) into out_dir; returns measured figures.
    `spec` (default SPEC) and `draw` (default `sample`: an image and its label index in spec) train another guide
    by the same recipe, e.g. one with a label of its own."""
    spec = spec or SPEC
    vq_dir = out_dir if (out_dir / "vqgan.yaml").is_file() else WEIGHTS_DIR
    vqgan = load_vqgan(vq_dir / "vqgan.yaml", vq_dir / "vqgan.safetensors")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Guide(spec)
    augment = build_augments(["affine"])  # the views generation scores (vqclip.optim.guidance: guide views)
    opt = torch.optim.AdamW(model.parameters(), lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    held_x, held_y = batch(np.random.default_rng(seed + 10_000), held_out, vqgan, draw)
    t0 = time.time()
    for step in range(steps):
        loss = fit_step(model, opt, sched, augment, *batch(rng, batch_size, vqgan, draw))
        if step % 100 == 0 or step == steps - 1:
            log.info("guide step %d/%d loss %.4f  %.0fs", step, steps, loss.item(), time.time() - t0)
    wall = time.time() - t0
    figures = held_out_figures(model, held_x, held_y)
    export_fp16(model.net, out_dir, "guide.safetensors", "guide.json", spec.to_json())
    return {"wall_s": wall, "params": sum(p.numel() for p in model.parameters()), "steps": steps, **figures}
