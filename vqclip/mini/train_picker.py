"""Train the mini preset's picker: a second open_clip CLIP, with a ResNet image tower, that scores best-of-n starts.

The generating CLIP (a ViT with 8 px patches) ranks a lumpy outline as high as a clean one, so it cannot tell which
of several finished starts drew the shape asked for. The picker sees the image through convolutions from the first
pixel on, learns from scenes shown the way generation sees them (through the VQGAN, with the generation-like
augmentation), and learns that an outline pushed out of shape is a blob, not a circle, square or triangle. It is
never optimised against, so the starts cannot learn to please it. Written as picker.json + picker.safetensors
(fp16), loaded like any open_clip CLIP, named by the preset's `candidates.clip`.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vqclip.mini import world
from vqclip.mini.train_clip import augment, batch, consistent, contrastive_loss, normalize, zero_shot
from vqclip.mini.train_vqgan import to_tensor

log = logging.getLogger("vqclip")

PICKER_CONFIG: dict = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},  # a list of layers: open_clip's ResNet
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def lumpy_scene(rng: np.random.Generator, amount: tuple[float, float] = (0.15, 0.3)) -> tuple[np.ndarray, world.Scene]:
    """A world scene whose shape's outline is pushed out of shape by a smooth random field (up to `amount` of its
    half-extent), as uint8 [64,64,3], and the blob scene that captions it ("a red blob on a blue background")."""
    scene = world.sample_scene(rng)
    shape = scene.shapes[0]
    y, x = world.pixel_centres(world.SIZE, world.SIZE)
    cells = int(rng.integers(3, 7))
    coarse = torch.from_numpy(rng.normal(size=(1, 2, cells, cells))).float()
    field = F.interpolate(coarse, size=(world.SIZE, world.SIZE), mode="bicubic", align_corners=True)[0].numpy()
    field *= shape.r * rng.uniform(*amount) / np.abs(field).max()
    img = np.empty((world.SIZE, world.SIZE, 3), np.uint8)
    img[:] = world.COLORS[scene.background]
    img[world.inside(shape.kind, x + field[0] - shape.cx, y + field[1] - shape.cy, shape.r)] = world.COLORS[shape.color]
    return img, world.Scene(scene.background, (shape,), blob=True)


def lumpy_batch(rng: np.random.Generator, n: int) -> tuple[Tensor, list[str], list[world.Attributes]]:
    """n lumpy scenes: images [n,3,64,64] in [0,1], their blob captions and attributes."""
    scenes = [lumpy_scene(rng) for _ in range(n)]
    return (to_tensor(np.stack([img for img, _ in scenes])), [world.caption(s, rng) for _, s in scenes],
            [world.attributes(s) for _, s in scenes])


def train_picker(out_dir: Path, seed: int = 0, steps: int = 1200, batch_size: int = 96, lumpy: int = 32,
                 lr: float = 1e-3) -> dict:
    """Train the picker from scratch: each step `batch_size` world scenes (with copies, fragments, clutter and blobs
    as negatives) and `lumpy` lumpy ones, all through the mini VQGAN in out_dir; writes picker.json +
    picker.safetensors (fp16) there and returns measured figures."""
    import open_clip
    from open_clip.model import CLIP

    from vqclip.mini.adversarial import reconstruct
    from vqclip.mini.export import export_fp16
    from vqclip.mini.train_clip import _load_vqgan

    vqgan = _load_vqgan(out_dir, "the picker sees its scenes through")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CLIP(**PICKER_CONFIG)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=PICKER_CONFIG["text_cfg"]["context_length"])
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    t0 = time.time()
    model.train()
    for step in range(steps):
        x, caps, attrs = batch(rng, batch_size, 0.2, 0.1, 0.15)
        if lumpy:
            lx, lcaps, lattrs = lumpy_batch(rng, lumpy)
            x, caps, attrs = torch.cat([x, lx]), caps + lcaps, attrs + lattrs
        x = normalize(augment(reconstruct(vqgan, x, torch.bfloat16), gen))
        pos = consistent(attrs, [world.parse_caption(c) for c in caps])
        img_f = F.normalize(model.encode_image(x), dim=-1)
        txt_f = F.normalize(model.encode_text(tokenizer(caps)), dim=-1)
        loss = contrastive_loss(img_f, txt_f, model.logit_scale, pos)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log.info("picker step %d/%d loss %.4f  %.0fs", step, steps, loss.item(), time.time() - t0)
    model.eval()
    wall = time.time() - t0
    export_fp16(model, out_dir, "picker.safetensors", "picker.json", json.dumps(PICKER_CONFIG, indent=2) + "\n")
    figures = {"wall_s": wall, "params": sum(p.numel() for p in model.parameters()), "steps": steps, "seed": seed,
               "batch": batch_size, "lumpy": lumpy, **zero_shot(model, tokenizer)}
    log.info("picker done: %s", figures)
    return figures
