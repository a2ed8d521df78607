"""Generator negatives for mini CLIP training: a persistent pool of VQGAN+CLIP generations against the CLIP in training.

A CLIP trained only on rendered scenes rates a round blob higher for "a red square ..." than a real red square:
the optimiser finds what the encoder accepts, not what the caption means. Stage 3 of `train_clip` therefore keeps
a pool of latents that take one generation step per training step (the ``mini`` preset's recipe: flat start in the
background colour, whole-image affine + noise views, TV prior, Adam), always against the current CLIP, and trains
CLIP so that a clean render of each pooled caption outranks the pool's image of it (persistent contrastive
divergence, in the manner of a GAN discriminator). No judge and no labels beyond the caption are used.

The VQGAN is most of a step's time. Stage 3 runs it under bf16 autocast (codes still chosen in fp32, as generation on
CUDA does) on CPUs with native bf16, where that is three times faster, and in fp32 on other CPUs, where emulated bf16
is ~40 times slower; stage 4 runs it in fp32, exactly as generation on CPU does.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vqclip.mini import world
from vqclip.mini.train.batches import normalize
from vqclip.mini.train.vqgan import reconstruct as fp32_reconstruct
from vqclip.nets.device import amp_autocast
from vqclip.nets.lean import decode_latent
from vqclip.nets.vqgan import VQGAN
from vqclip.optim.augments import build_augments
from vqclip.optim.inits import flat_image, prompt_background
from vqclip.draw.vqgan import decode_image
from vqclip.train.generated import generation_grad, latent_adam


@torch.no_grad()
def reconstruct(vqgan: VQGAN, x: Tensor, amp: torch.dtype | None = None) -> Tensor:
    """Images [B,3,H,W] in [0,1] -> the VQGAN's reconstruction in [0,1]: `train_vqgan.reconstruct` in fp32, else
    encoder and lean decoder under autocast `amp` (nearest codes are fp32 either way)."""
    if amp is None:
        return fp32_reconstruct(vqgan, x)
    with amp_autocast(x.device.type, amp):
        return decode_latent(vqgan, vqgan.encode(x)).float().clamp(0, 1)


class GeneratorPool:
    """`size` latents, each optimised towards its caption for `life` steps, then restarted on a fresh caption."""

    def __init__(self, vqgan: VQGAN, rng: np.random.Generator, size: int = 32, life: int = 100, lr: float = 0.1,
                 tv_weight: float = 20.0, views: int = 2, noise: float = 0.1, min_age: int = 10,
                 amp: torch.dtype | None = None):
        self.vqgan, self.rng, self.size, self.life, self.lr, self.amp = vqgan, rng, size, life, lr, amp
        self.tv_weight, self.views, self.noise, self.min_age = tv_weight, views, noise, min_age
        self.augment = build_augments(["affine"])
        self.prompts = world.all_prompts()
        cb = vqgan.codebook
        self.z_min, self.z_max = cb.min(0).values.view(1, -1, 1, 1), cb.max(0).values.view(1, -1, 1, 1)
        self.captions = [""] * size
        self.z = torch.zeros(size, cb.shape[1], world.SIZE // vqgan.factor, world.SIZE // vqgan.factor)
        self.m, self.v = torch.zeros_like(self.z), torch.zeros_like(self.z)
        self.age = torch.zeros(size, dtype=torch.long)
        self.restart(torch.arange(size))
        self.age = torch.from_numpy(rng.integers(0, life, size)).long()  # staggered, so every age is present
        self.image = self.decode(self.z).detach()

    @torch.no_grad()
    def restart(self, idx: Tensor) -> None:
        """New captions for the latents at `idx`, started flat in their background colour, Adam state cleared."""
        for i in idx.tolist():
            self.captions[i] = self.prompts[int(self.rng.integers(len(self.prompts)))]
        flat = [flat_image(world.SIZE, world.SIZE, prompt_background(self.captions[i]), None) for i in idx.tolist()]
        self.z[idx] = self.vqgan.encode(torch.cat(flat))
        self.m[idx], self.v[idx], self.age[idx] = 0.0, 0.0, 0

    def decode(self, z: Tensor) -> Tensor:
        """Latents -> images [P,3,H,W] in [0,1], quantized straight-through as in generation."""
        return decode_image(self.vqgan, z, self.amp)

    def step(self, model, tokenizer) -> float:
        """One Adam step of every latent towards its caption under `model`; returns the mean prompt distance."""
        grad, image, dist = generation_grad(
            self.vqgan, self.z, self.captions, lambda c: F.normalize(model.encode_text(tokenizer(c)), dim=-1),
            lambda v: F.normalize(model.encode_image(normalize(v)), dim=-1), self.augment, self.views, self.noise,
            self.tv_weight, self.amp)  # CLIP's parameters get no gradient here
        with torch.no_grad():  # Adam by hand: torch's Adam keeps one step count, each latent here needs its own
            self.age += 1
            self.z = latent_adam(self.z, grad, self.m, self.v, self.age, self.lr, self.z_min, self.z_max)
            self.image = image
            old = self.age >= self.life
            if old.any():
                self.restart(old.nonzero()[:, 0])
        return float(dist.mean())

    def negatives(self) -> tuple[Tensor, list[str]]:
        """The pool's images old enough to have left their flat start, [k,3,H,W], and their captions."""
        keep = (self.age >= self.min_age).nonzero()[:, 0]  # ages after this step's restarts
        return self.image[keep], [self.captions[i] for i in keep.tolist()]
