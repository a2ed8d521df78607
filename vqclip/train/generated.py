"""Generator negatives for `vqclip train clip --generated N`: a pool of VQGAN latents drawn towards the training
captions against the CLIP in training, and a loss that makes each caption rank its real image above them.

A CLIP fine-tuned on real images alone is a poor guide for generation: the optimiser finds what the new words'
features accept (scattered strokes in a ring's colour, say) rather than what they mean. As in the mini CLIP's recipe
(vqclip.mini.train.adversarial, which draws its own world's captions and renders), the pool takes one generation step
per training step, always against the current CLIP, and restarts each latent on another caption after `life` steps;
`ranking_loss` then asks each pooled caption to prefer its real image, shown through the same VQGAN (so the decoder's
texture is no tell), to the pool's picture of it. Every random draw is a function of the seed and the step, and the
pool's state goes into the checkpoint, so a resumed run ends on the same weights as an unbroken one."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.transform import image_transform_v2
from torch import Tensor

from vqclip.draw.vqgan import decode_image
from vqclip.errors import VqclipError
from vqclip.files.images import save_png
from vqclip.nets.lean import decode_latent
from vqclip.optim.augments import build_augments
from vqclip.optim.cutouts import add_noise
from vqclip.optim.inits import prompt_background
from vqclip.optim.losses import spherical_distance, tv_loss
from vqclip.train import data as D

_STATE = ("z", "m", "v", "age", "index")


def latent_adam(z: Tensor, grad: Tensor, m: Tensor, v: Tensor, age: Tensor, lr: float, lo: Tensor, hi: Tensor) -> Tensor:
    """One Adam step (betas 0.9, 0.999) of latents z [P,E,h,w], each with its own step count `age` [P] (already
    advanced), clamped to the codebook's range [lo, hi]; updates m and v in place, returns the new z. torch's Adam
    keeps one step count for a tensor: a pool restarts its latents at different times."""
    t = age.view(-1, 1, 1, 1).float()
    m.mul_(0.9).add_(0.1 * grad)
    v.mul_(0.999).add_(0.001 * grad * grad)
    step = lr * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)).sqrt() + 1e-8)
    return (z - step).maximum(lo).minimum(hi)


def generation_grad(vqgan, z: Tensor, captions: list[str], encode_text: Callable[[list[str]], Tensor],
                    encode_image: Callable[[Tensor], Tensor], augment, views: int, noise: float, tv_weight: float,
                    amp: Optional[torch.dtype] = None, seed: Optional[int] = None) -> tuple[Tensor, Tensor, Tensor]:
    """One generation step's gradient for latents z [P,E,h,w], each drawn towards its own caption as `vqclip generate`
    draws: `views` affine (`augment`) + noise views of each decoded image, scored by `encode_image` ([V,3,S,S] in
    [0,1] -> unit features) as the spherical distance to `encode_text(captions)` (unit features [P,D], no gradient),
    plus tv_weight x P x the TV prior. The views are drawn from `seed` when given (so a resume draws them again),
    else from the global RNG. The CLIP's weights get no gradient. Returns (grad of z, the images [P,3,S,S], the
    distance of each latent [P]), the last two detached."""
    z = z.clone().requires_grad_(True)
    image = decode_image(vqgan, z, amp)
    with torch.random.fork_rng(devices=[z.device] if z.device.type == "cuda" else [], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        seen = add_noise(augment(image.repeat_interleave(views, 0)), noise)
    with torch.no_grad():
        text = encode_text(captions)
    emb = encode_image(seen)
    own = torch.arange(len(z)).repeat_interleave(views)
    dist = spherical_distance(emb, text)[torch.arange(len(own)), own].view(len(z), views).mean(1)
    loss = dist.sum() + tv_weight * len(z) * tv_loss(image)
    (grad,) = torch.autograd.grad(loss, z)
    return grad, image.detach(), dist.detach()


def ranking_loss(text: Tensor, real: Tensor, fake: Tensor, scale: Tensor) -> Tensor:
    """Mean cross-entropy of each caption choosing its real image over the generator's: unit features text, real,
    fake [K,D], logits scale * [<t,r>, <t,g>], target the real one (= mean softplus(scale * (<t,g> - <t,r>)))."""
    logits = scale * torch.stack([(text * real).sum(-1), (text * fake).sum(-1)], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def step_seed(seed: int, step: int, salt: int) -> int:
    """A seed for the pool's draws of training step `step` (salt: which draw), the same in a resumed run."""
    return (seed * 1_000_003 + step * 7919 + salt) % 2**63


class GeneratedPool:
    """`size` latents of `vqgan` at the CLIP's input size, each drawn towards the caption of a training pair for `life`
    generation steps (flat start in the caption's background colour, affine + noise views, a TV prior, Adam at `lr`),
    then restarted on another pair.

    Args:
        vqgan: the VQGAN that draws (vqclip.nets.vqgan.VQGAN, frozen).
        clip: the CLIP in training (vqclip.nets.clip.ClipModel: encode_image of [0,1] images, encode_text).
        pairs: the training pairs; the pool draws their captions and shows their images as the real ones.
        size: latents in the pool.
        seed: the run's seed (every draw is a function of it and the step).
        life: generation steps before a latent restarts; `min_age`: steps before its picture counts as a negative
            (default a fifth of the life, at least 1).
        amp: autocast dtype of the VQGAN's decoder (None: float32, as generation on CPU).
    """

    def __init__(self, vqgan, clip, pairs: Sequence[D.Pair], size: int, seed: int, life: int = 50, lr: float = 0.1,
                 tv_weight: float = 20.0, views: int = 2, noise: float = 0.1, min_age: Optional[int] = None,
                 amp: Optional[torch.dtype] = None):
        side = clip.image_size
        if side % vqgan.factor:
            raise VqclipError(f"--generated: the CLIP's input size {side} is not a multiple of the VQGAN's factor "
                              f"{vqgan.factor}; pair this CLIP with another VQGAN or train without --generated")
        self.vqgan, self.clip, self.pairs, self.size, self.seed = vqgan, clip, list(pairs), size, seed
        self.life, self.lr, self.tv_weight, self.views, self.noise, self.min_age, self.amp = (
            life, lr, tv_weight, views, noise, max(1, life // 5) if min_age is None else min_age, amp)
        self.device = clip.mean.device
        self.augment = build_augments(["affine"])
        self.real_tf = image_transform_v2(dataclasses.replace(clip.preprocess_cfg, mean=(0.0,) * 3, std=(1.0,) * 3),
                                          is_train=False)  # the eval transform, in [0,1]
        cb = vqgan.codebook
        self.lo, self.hi = cb.min(0).values.view(1, -1, 1, 1), cb.max(0).values.view(1, -1, 1, 1)
        n = side // vqgan.factor
        self.z = torch.zeros(size, cb.shape[1], n, n, device=self.device)
        self.m, self.v = torch.zeros_like(self.z), torch.zeros_like(self.z)
        self.index, self.age = torch.zeros(size, dtype=torch.long), torch.zeros(size, dtype=torch.long)
        self.restart(torch.arange(size), step=0)
        self.age = torch.arange(size) * life // size  # staggered, so restarts spread over the steps
        self.image: Optional[Tensor] = None

    def captions(self, idx: Optional[Tensor] = None) -> list[str]:
        """The captions the latents at `idx` (default all) are drawn towards."""
        return [self.pairs[i].caption for i in (self.index if idx is None else self.index[idx]).tolist()]

    @torch.no_grad()
    def restart(self, idx: Tensor, step: int) -> None:
        """New pairs for the latents at `idx`, each started flat in its caption's background colour (grey when it
        names none), Adam state cleared."""
        rng = np.random.default_rng(step_seed(self.seed, step, 1))
        self.index[idx] = torch.from_numpy(rng.integers(len(self.pairs), size=len(idx)))
        side = self.clip.image_size
        flat = torch.tensor([prompt_background(c) or [0.5, 0.5, 0.5] for c in self.captions(idx)])
        self.z[idx] = self.vqgan.encode(flat.view(-1, 3, 1, 1).expand(-1, 3, side, side).to(self.device))
        self.m[idx], self.v[idx], self.age[idx] = 0.0, 0.0, 0

    def step(self, step: int) -> float:
        """One generation step of every latent towards its caption under the CLIP as it is now (its weights get no
        gradient); restarts the latents whose life is over. Returns the mean spherical distance to the captions."""
        grad, image, dist = generation_grad(
            self.vqgan, self.z, self.captions(), self.clip.encode_text, self.clip.encode_image, self.augment,
            self.views, self.noise, self.tv_weight, self.amp, seed=step_seed(self.seed, step, 2))
        with torch.no_grad():
            self.age += 1
            self.z = latent_adam(self.z, grad, self.m, self.v, self.age.to(self.device), self.lr, self.lo, self.hi)
            self.image = image
            old = self.age >= self.life
            if old.any():
                self.restart(old.nonzero()[:, 0], step)
        return float(dist.mean())

    def negatives(self) -> tuple[Tensor, Tensor]:
        """(the pictures [k,3,S,S] in [0,1] of the latents old enough to have left their flat start, the indices [k]
        of their training pairs), as the last `step` left them."""
        keep = (self.age >= self.min_age).nonzero()[:, 0]
        if self.image is None:
            return torch.zeros(0, 3, 1, 1), torch.zeros(0, dtype=torch.long)
        return self.image[keep.to(self.image.device)], self.index[keep]

    @torch.no_grad()
    def real(self, index: Tensor) -> Tensor:
        """The training pairs' images [k,3,S,S] in [0,1], as the VQGAN gives them back (encoded and decoded)."""
        x = D.load_images([self.pairs[i] for i in index.tolist()], self.real_tf).to(self.device)
        return decode_latent(self.vqgan, self.vqgan.encode(x)).float().clamp(0, 1)

    def save_grid(self, path, n: int = 8) -> None:
        """A PNG (written atomically) of up to n pooled pairs' real images, as the VQGAN gives them back, over the
        pool's pictures of their captions: what the CLIP is being taught to tell apart."""
        if self.image is None:
            return
        fake, index = self.image[:n], self.index[:n]
        real = self.real(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        top, bottom = torch.cat(list(real.cpu()), dim=2), torch.cat(list(fake.cpu()), dim=2)
        save_png(torch.cat([top, bottom], dim=1)[None], path)

    def state_dict(self) -> dict:
        """The pool's tensors (latents, Adam moments, ages, pairs), for the checkpoint."""
        return {k: getattr(self, k).detach().cpu().clone() for k in _STATE}

    def load_state_dict(self, state: dict) -> None:
        """Back to a checkpoint's pool (`state_dict`)."""
        for k in _STATE:
            dev = self.device if k in ("z", "m", "v") else torch.device("cpu")
            setattr(self, k, state[k].to(dev, copy=True))


def pool_vqgan(source: str, device: Optional[torch.device] = None):
    """The VQGAN that draws the pool: that of the preset (or preset folder) `--from` names, as `vqclip train vqgan
    --from` finds it (fetched once), frozen; with no device, only checks that there is one."""
    from vqclip.nets.vqgan import load_vqgan  # here: --generated alone needs the VQGAN's loader
    from vqclip.train.vqexport import source_files

    try:
        config, checkpoint = source_files(source)
    except VqclipError as exc:
        raise VqclipError(f"--generated needs a VQGAN to draw with: {exc}") from None
    if device is None:
        return None
    return load_vqgan(config, checkpoint).to(device).eval().requires_grad_(False)
