"""Train the mini VQGAN (taming Encoder/Decoder + VectorQuantizer2, f8) on the mini world for reconstruction.

Recipe: an autoencoder warm-up without quantisation, then the codebook is initialised from encoder outputs, then
VQ training (MSE + codebook/commitment loss) with dead codes restarted from current encoder outputs.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vqclip.mini import world
from vqclip.mini.train.batches import to_tensor
from vqclip.mini.train.export import export_fp16
from vqclip.nets.vqgan import VQGAN
from vqclip.train.clip import _eta, lr_factor

log = logging.getLogger("vqclip")

DDCONFIG: dict = {"double_z": False, "z_channels": 64, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 64,
                  "ch_mult": [1, 1, 1, 1], "num_res_blocks": 0, "attn_resolutions": [], "dropout": 0.0}
N_EMBED, EMBED_DIM = 512, 64

YAML = """\
# mini VQGAN: taming-transformers VQModel format, trained by `python -m vqclip.mini.train vqgan --seed {seed}`
model:
  base_learning_rate: {lr}
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: {embed_dim}
    n_embed: {n_embed}
    ddconfig:
      double_z: false
      z_channels: {z_channels}
      resolution: 64
      in_channels: 3
      out_ch: 3
      ch: {ch}
      ch_mult: {ch_mult}
      num_res_blocks: {num_res_blocks}
      attn_resolutions: {attn_resolutions}
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.DummyLoss
"""


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR in dB of [B,3,H,W] in [0,1] images."""
    mse = ((x.clamp(0, 1) - y) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The recipe's learning rate: a warmup over 100 steps scaling a cosine from 1 to 0.1 over all the steps
    (`vqclip.train.clip.lr_factor`)."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 100, steps, floor=0.1, overlap=True))


def world_batch(rng: np.random.Generator, n: int, negatives: float = 0.3) -> Tensor:
    """n fresh mini-world scenes as [n,3,64,64] in [0,1] (a share of multi-object negatives for variety)."""
    imgs = np.stack([world.render(world.sample_negative(rng) if rng.random() < negatives else world.sample_scene(rng))
                     for _ in range(n)])
    return to_tensor(imgs)


def reconstruct(model, x: Tensor) -> Tensor:
    """[B,3,H,W] in [0,1] -> quantised reconstruction in [0,1] (through the models.VQGAN interface)."""
    return model.decode(model.encode(x)).clamp(0, 1)


def held_out_psnr(model, n: int = 256, seed: int = 54321) -> float:
    """Mean PSNR (dB) of quantised reconstructions of n held-out proper scenes."""
    imgs, _, _ = world.make_dataset(n, seed)
    x = to_tensor(imgs)
    with torch.no_grad():
        return float(torch.cat([psnr(reconstruct(model, x[i:i + 64]), x[i:i + 64]) for i in range(0, n, 64)]).mean())


def train_vqgan(out_dir: Path, seed: int = 0, steps: int = 1400, batch_size: int = 8, lr: float = 8e-4,
                warmup: int = 200, restart_every: int = 50) -> dict:
    """Train from scratch and write vqgan.yaml + vqgan.safetensors (fp16) into out_dir; returns measured figures."""


    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = VQGAN(DDCONFIG, N_EMBED, EMBED_DIM)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.9))
    sched = schedule(opt, steps)
    usage = torch.zeros(N_EMBED)
    t0 = time.time()
    model.train()
    for step in range(steps):
        x = world_batch(rng, batch_size)
        h = model.quant_conv(model.encoder(x * 2 - 1))
        if step < warmup:  # plain autoencoder: lets the encoder find useful features before there is a codebook
            z_q, qloss = h, h.new_zeros(())
        else:
            if step == warmup:
                _init_codebook(model, rng, h.detach())
            z_q, qloss, (_, _, idx) = model.quantize(h)
            usage += torch.bincount(idx.flatten(), minlength=N_EMBED).float()
            if (step - warmup) % restart_every == restart_every - 1:
                _restart_dead(model, usage, h.detach(), rng)
                usage.zero_()
        rec = model.decoder(model.post_quant_conv(z_q)).add(1).div(2)
        loss = F.mse_loss(rec, x) + F.l1_loss(rec, x) * 0.1 + qloss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            spent = time.time() - t0
            log.info("vqgan step %d/%d loss %.5f psnr %.2f  %.0fs  ETA %s", step + 1, steps, loss.item(),
                     psnr(rec.detach(), x).mean().item(), spent, _eta(spent / (step + 1) * (steps - step - 1)))
    model.eval()
    wall = time.time() - t0
    figures = {"wall_s": wall, "params": sum(p.numel() for p in model.parameters()), "steps": steps,
               "batch": batch_size, "seed": seed, "psnr_db": held_out_psnr(model)}
    export_fp16(model, out_dir, "vqgan.safetensors", "vqgan.yaml",
                YAML.format(seed=seed, lr=lr, embed_dim=EMBED_DIM, n_embed=N_EMBED, **DDCONFIG))
    log.info("vqgan done: %s", figures)
    return figures


def _vectors(h: Tensor) -> Tensor:
    """[B,E,h,w] latents -> [B*h*w, E] vectors."""
    return h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])


def _init_codebook(model, rng: np.random.Generator, h: Tensor) -> None:
    """Set every code to a (slightly jittered) encoder output drawn from this batch."""
    v = _vectors(h)
    pick = torch.from_numpy(rng.integers(0, len(v), N_EMBED))
    with torch.no_grad():
        model.quantize.embedding.weight.copy_(v[pick] + 0.01 * v.std() * torch.randn(N_EMBED, v.shape[1]))


def _restart_dead(model, usage: Tensor, h: Tensor, rng: np.random.Generator) -> None:
    """Move codes unused since the last restart onto encoder outputs of this batch (keeps the whole codebook alive)."""
    dead = (usage == 0).nonzero().flatten()
    if len(dead) == 0:
        return
    v = _vectors(h)
    pick = torch.from_numpy(rng.integers(0, len(v), len(dead)))
    with torch.no_grad():
        model.quantize.embedding.weight[dead] = v[pick] + 0.01 * v.std() * torch.randn(len(dead), v.shape[1])
    log.info("restarted %d dead codes", len(dead))
