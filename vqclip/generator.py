"""The optimisation loop: a VQGAN latent is decoded, cut up, scored by CLIP against the prompts, and updated.

No file I/O here: each step is reported to callbacks as a `StepEvent`; a callback returning True stops the run.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .candidates import first_generation
from .config import GenerateConfig, check_device
from .cutouts import CutoutDraw, Cutouts
from .errors import VqclipError
from .guide import Guide, GuideTerm
from .init import initial_image, open_rgb, random_codes
from .models import ClipModel, VQGAN
from .prompts import Prompt, check_has_target, parse_job_prompts, prompt_loss, tv_loss, weights_tensor
from .quantize import clamp_with_grad, vector_quantize
from .schedules import learning_rate
from .speed import amp_autocast, compiled, cpu_native_bf16, decode_latent, is_frozen, plan_memory

log = logging.getLogger("vqclip")

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
              "rmsprop": torch.optim.RMSprop, "radam": torch.optim.RAdam, "nadam": torch.optim.NAdam,
              "adamax": torch.optim.Adamax, "adagrad": torch.optim.Adagrad}


@dataclass
class Models:
    """The frozen networks of a run: one VQGAN and one or more weighted CLIP models."""

    vqgan: VQGAN
    clips: list[tuple[ClipModel, float]]
    judges: list[tuple[ClipModel, float]] = field(default_factory=list)  # score best-of-n starts (default: clips)
    guide: Optional[Guide] = None  # classifier guidance (vqclip.guide), when the job names one


@dataclass
class StepEvent:
    """What a callback sees after each update: `image` [B,3,H,W] in [0,1] is the one scored at `step` (B = 1, or
    the number of starts during best-of-n trials)."""

    step: int  # updates done before this image was scored (0 = the initial image)
    total: int
    loss: float
    losses: dict[str, float]
    image: Tensor
    generation: "Generation"
    trial: int = 0  # n >= 1: a trial step of n starts run together (best of n), not yet the run's; outputs skip these


@dataclass
class GenerateResult:
    """The outcome of a run: final image [1,3,H,W] in [0,1], its latent, the seed and the loss curve."""

    image: Tensor
    z: Tensor
    seed: int
    steps: int
    losses: list[float] = field(default_factory=list)
    stopped: bool = False
    start: int = 0  # which of the best-of-n starts went on (0 without best of n)


Callback = Callable[[StepEvent], Optional[bool]]


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda, else mps, else cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    check_device(name)
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VqclipError(f"device: '{name}' asked for but CUDA is not available here; use --device cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise VqclipError(f"device: '{name}' asked for but this machine has {torch.cuda.device_count()} CUDA "
                          f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise VqclipError(f"device: '{name}' asked for but MPS is not available here; use --device cpu or auto")
    return device


AUTO_BF16_CPU_PIXELS = 128 * 128  # on CPUs with native bf16, 'auto' uses it from this image size (measured faster)


def autocast_dtype(precision: str, device: torch.device, pixels: int = 0) -> Optional[torch.dtype]:
    """The autocast dtype for a precision setting: bf16 on CUDA, and on CPUs with native bf16 (AVX512-BF16/AMX) when
    a step decodes at least 128x128 pixels (all starts together); fp32 (None) elsewhere unless asked."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    if precision == "auto" and device.type == "cpu" and pixels >= AUTO_BF16_CPU_PIXELS and cpu_native_bf16():
        return torch.bfloat16
    return None


def decode_image(vqgan: VQGAN, z: Tensor, amp: Optional[torch.dtype] = None,
                 decode: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
    """Latent [B,E,h,w] -> image [B,3,H,W] in [0,1] as generation sees it: nearest codes in fp32 (straight-through
    gradient), then `decode` (default: the lean decoder) under autocast `amp`."""
    z_q = vector_quantize(z, vqgan.codebook)
    with amp_autocast(z_q.device.type, amp):
        image = decode(z_q) if decode else decode_latent(vqgan, z_q)
    return clamp_with_grad(image.float(), 0, 1)


def clip_term_names(names: list[str]) -> list[str]:
    """The loss-term name of each CLIP model: `clip:NAME`, or `clip:NAME#i` (its position) for a name given twice
    (two tags of one architecture), so that no term replaces another in the sum."""
    return [f"clip:{n}" if names.count(n) == 1 else f"clip:{n}#{i}" for i, n in enumerate(names)]


def rounded_size(size: list[int], factor: int) -> tuple[int, int]:
    """(width, height) rounded to multiples of the VQGAN factor, with a notice when that changes them."""
    w, h = (max(factor, round(s / factor) * factor) for s in size)
    if (w, h) != tuple(size):
        log.info("size %dx%d rounded to %dx%d (a multiple of the VQGAN's factor %d)", size[0], size[1], w, h, factor)
    return w, h


def resolve_seed(seed: Optional[int]) -> int:
    """The given seed, or for none (or -1, as in other generators) a fresh random one, recorded with the outputs so
    the run can be repeated."""
    return int(seed) if seed is not None and seed != -1 else secrets.randbelow(2**31)


class Generation:
    """One run's state: latent z, optimizer, schedule, cached prompt embeddings and the step counter. With `starts`
    > 1, z holds that many latents, optimised together as one batch (best of n; see candidates and `keep`)."""

    def __init__(self, cfg: GenerateConfig, models: Models, device: torch.device, seed: int, starts: int = 1):
        self.cfg, self.models, self.device, self.seed, self.starts = cfg, models, device, seed, starts
        self.start = 0  # which of the starts this run went on with (see `keep`)
        self.stopped_in_trials = False  # a callback stopped the best-of-n trials: `run` takes no step
        # the precision of the whole job, decided by the pixels of a step with all of best-of-n's starts: the same
        # for the trials, the chosen start going on alone, and a resume of it
        self.amp = autocast_dtype(cfg.precision, device, max(starts, cfg.candidates.n) * cfg.size[0] * cfg.size[1])
        self.rng = torch.Generator().manual_seed(seed)
        vq = models.vqgan
        self.width, self.height = rounded_size(cfg.size, vq.factor)
        # 1. Targets: text and image prompts, embedded once per CLIP model
        self.prompts = self._parse_prompts()
        self.targets = self.embed_targets(self.prompts)
        self.weights = weights_tensor(self.prompts, device)
        self.weight_schedule: Optional[Callable[[int], Tensor]] = None
        self.guide = GuideTerm(models.guide, cfg.guide.views) if models.guide and cfg.guide.weight > 0 else None
        self._aimed: Optional[tuple[str, ...]] = None  # the texts the guide was last aimed from (see `_aim_guide`)
        self._aim_guide(self.weights)  # a story's schedule, set after this, re-aims it at every step it changes
        # 2. Cutout samplers, one per CLIP input size
        c = cfg.cutouts
        self.cutouts = {size: Cutouts(size, c.n, c.pow, c.min_size, c.augments, c.noise)
                        for size in {clip.image_size for clip, _ in models.clips}}
        total = sum(w for _, w in models.clips if w > 0)
        self.clip_weights = [w / total for _, w in models.clips]
        self.clip_terms = clip_term_names([clip.name for clip, _ in models.clips])
        # 3. Initial latent
        self.z = self._initial_latent().requires_grad_(True)
        self.z_init = self.z.detach().clone()
        cb = vq.codebook
        self.z_min = cb.min(0).values.view(1, -1, 1, 1).to(device)
        self.z_max = cb.max(0).values.view(1, -1, 1, 1).to(device)
        # 4. Optimizer and schedule
        self.optimizer = self._make_optimizer([self.z])
        self.step_count = 0
        # 5. Speed and memory: lean decoder (frozen weights), checkpointing/micro-batches when short, compile
        self.lean = is_frozen(vq)
        self.checkpoint, self.micro_batch = plan_memory(
            cfg.memory, vq.decoder, (self.height // vq.factor, self.width // vq.factor), [clip for clip, _ in models.clips],
            c.n, cfg.micro_batch, 2 if self.amp else 4, device, batch=starts)
        self._decode = compiled(vq.decode, "VQGAN decoder") if cfg.compile else self._decode_eager
        self._encode = {id(clip): compiled(clip.encode_image, f"CLIP {clip.name}") if cfg.compile else clip.encode_image
                        for clip, _ in models.clips}

    def speed_options(self) -> dict:
        """The speed/memory choices in effect (for benchmarks and logs)."""
        return {"precision": "bf16" if self.amp == torch.bfloat16 else "fp32", "lean_decoder": self.lean,
                "checkpoint": self.checkpoint, "micro_batch": self.micro_batch, "compile": self.cfg.compile}

    def _decode_eager(self, z_q: Tensor) -> Tensor:
        vq = self.models.vqgan
        return decode_latent(vq, z_q, self.checkpoint) if self.lean else vq.decode(z_q)

    def _parse_prompts(self) -> list[Prompt]:
        cfg = self.cfg
        prompts = parse_job_prompts(cfg.prompt, cfg.negative, cfg.image_prompts)
        check_has_target(prompts)
        return prompts

    @torch.no_grad()
    def embed_targets(self, prompts: list[Prompt], clips: Optional[list[tuple[ClipModel, float]]] = None) -> list[Tensor]:
        """Per CLIP model (default: the run's), the unit embeddings [M,D] of every prompt (texts and images)."""
        out = []
        for clip, _ in self.models.clips if clips is None else clips:
            rows = []
            for p in prompts:
                if p.image:  # prepared as open_clip prepares images for this model (its resize mode, interpolation)
                    rows.append(clip.embed_images([open_rgb(p.text)]))
                else:
                    rows.append(clip.encode_text([p.text]))
            out.append(torch.cat(rows))
        return out

    def set_prompts(self, prompts: list[Prompt]) -> None:
        """Replace the targets (e.g. a story's next prompt); embeddings are computed once here."""
        check_has_target(prompts)
        self.prompts, self.targets = prompts, self.embed_targets(prompts)
        self.weights = weights_tensor(prompts, self.device)
        self._aimed = None
        self._aim_guide(self.weights_at(self.step_count))

    def weights_at(self, step: int) -> Tensor:
        """The prompt weights [M] in effect at a step: the story's schedule, else the prompts' own weights."""
        return self.weight_schedule(step) if self.weight_schedule else self.weights

    def _aim_guide(self, weights: Tensor) -> None:
        """Point classifier guidance at the label named by the text prompts that pull at this step (positive weight,
        the strongest first), so a story re-aims it as its prompts change; none named: no guidance, with a notice."""
        if self.guide is None:
            return
        pulling = sorted(((-w, i) for i, (p, w) in enumerate(zip(self.prompts, weights.tolist()))
                          if not p.image and w > 0))
        texts = tuple(self.prompts[i].text for _, i in pulling)
        if texts == self._aimed:
            return
        self._aimed = texts
        self.guide.aim(list(texts))
        if self.guide.label is None:
            log.info("guide: the prompt names none of %s; no classifier guidance%s",
                     ", ".join(x for x in self.guide.guide.labels if not x.startswith("_")),
                     f" while '{texts[0]}' leads" if self.weight_schedule and texts else "")

    @torch.no_grad()
    def _initial_latent(self) -> Tensor:
        vq, init = self.models.vqgan, self.cfg.init
        h, w = self.height // vq.factor, self.width // vq.factor
        image = initial_image(init.kind, self.width, self.height, self.rng, init.image, init.color, self.cfg.prompt)
        if image is None:  # each start its own random codes; from an image, the starts part through their cutouts
            return torch.cat([random_codes(vq.codebook, h, w, self.rng) for _ in range(self.starts)]).to(self.device)
        return vq.encode(image.to(self.device)).repeat(self.starts, 1, 1, 1)

    def _make_optimizer(self, params: list[Tensor]) -> torch.optim.Optimizer:
        opt = self.cfg.optimizer
        return OPTIMIZERS[opt.name.lower()](params, lr=opt.lr)

    def lr_at(self, step: int) -> float:
        """Learning rate at a step under the configured schedule."""
        opt = self.cfg.optimizer
        return learning_rate(opt.schedule, opt.lr, opt.min_factor, step, self.cfg.steps)

    def set_latent(self, z: Tensor, reset_optimizer: bool = False) -> None:
        """Replace the latent in place (zoom videos re-encode the transformed image); optionally restart Adam."""
        with torch.no_grad():
            self.z.copy_(z)
        if reset_optimizer:
            self.optimizer = self._make_optimizer([self.z])

    def keep(self, start: int) -> None:
        """Go on with one of the starts alone: its latent, its start and its optimizer state (rows of the batch)."""
        rows = self.z.shape[0]
        state = self.optimizer.state_dict()
        for values in state["state"].values():
            for key, v in values.items():
                if torch.is_tensor(v) and v.dim() and v.shape[0] == rows:
                    values[key] = v[start:start + 1].clone()
        self.z = self.z.detach()[start:start + 1].clone().requires_grad_(True)
        self.z_init = self.z_init[start:start + 1].clone()
        self.optimizer = self._make_optimizer([self.z])
        self.optimizer.load_state_dict(state)
        self.start, self.starts = self.start + start, 1

    def decode(self, z: Optional[Tensor] = None) -> Tensor:
        """The images [B,3,H,W] in [0,1] of a latent (default: the current one), quantized straight-through."""
        return decode_image(self.models.vqgan, self.z if z is None else z, self.amp, self._decode)

    def losses(self, image: Tensor, views: Optional[list[CutoutDraw]] = None) -> dict[str, Tensor]:
        """Named loss terms for images [B,3,H,W] in [0,1] at the current step, each the mean over the B starts; their
        sum is what is minimised. `views` (one `CutoutDraw` per CLIP model) replays given cutouts instead of drawing
        new ones (tests compare a step with the reference loop this way)."""
        weights = self.weights_at(self.step_count)
        self._aim_guide(weights)
        parts = {}
        b, _, h, w = image.shape
        for k, ((clip, _), share, targets) in enumerate(zip(self.models.clips, self.clip_weights, self.targets)):
            if share <= 0:
                continue
            cut = self.cutouts[clip.image_size]
            batch = cut.apply(image, views[k] if views is not None else cut.draw(b, h, w))
            if 0 < self.micro_batch < len(batch):
                parts[self.clip_terms[k]] = share * self._micro_batched_loss(clip, batch, targets, weights)
                continue
            with amp_autocast(self.device.type, self.amp):
                embeds = self._encode[id(clip)](batch)
            parts[self.clip_terms[k]] = share * prompt_loss(embeds, targets, weights)
        if self.cfg.init.weight > 0:
            parts["init"] = self.cfg.init.weight * F.mse_loss(self.z, self.z_init)
        if self.cfg.tv_weight > 0:
            parts["tv"] = self.cfg.tv_weight * tv_loss(image)
        if self.guide is not None and self.guide.label is not None:
            parts["guide"] = self.cfg.guide.weight * self.guide(image, self.amp)
        return parts

    def _micro_batched_loss(self, clip: ClipModel, batch: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
        """`prompt_loss` of cutouts [N,3,S,S] scored `micro_batch` at a time, each chunk back-propagated at once, so
        only one chunk's CLIP activations are alive; the returned loss carries the summed gradient to `batch`."""
        leaf = batch.detach().requires_grad_(batch.requires_grad and torch.is_grad_enabled())
        total = batch.new_zeros(())
        for chunk in leaf.split(self.micro_batch):
            with amp_autocast(self.device.type, self.amp):
                embeds = self._encode[id(clip)](chunk)
            part = prompt_loss(embeds, targets, weights) * (len(chunk) / len(leaf))
            if leaf.requires_grad:
                part.backward()
            total = total + part.detach()
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(batch)
        return _InjectGrad.apply(batch, total, grad) if leaf.requires_grad else total

    def step(self, views: Optional[list[CutoutDraw]] = None) -> StepEvent:
        """One update of z; returns the event for the image that was scored (`views`: see `losses`)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_count)
        image = self.decode()
        parts = self.losses(image, views)
        loss = torch.stack(list(parts.values())).sum()
        self.optimizer.zero_grad(set_to_none=True)
        (loss * self.starts).backward()  # the sum over starts: each start gets the gradient it would get alone
        self.optimizer.step()
        with torch.no_grad():
            self.z.copy_(self.z.maximum(self.z_min).minimum(self.z_max))
        event = StepEvent(self.step_count, self.cfg.steps, loss.item(), {k: v.item() for k, v in parts.items()},
                          image.detach(), self)
        self.step_count += 1
        return event

    def state_dict(self) -> dict:
        """Everything needed to continue this run bit-exactly: latent, optimizer, step and RNG states."""
        return {"z": self.z.detach().cpu().clone(), "z_init": self.z_init.cpu().clone(), "step": self.step_count,
                "optimizer": self.optimizer.state_dict(), "rng": self.rng.get_state(),
                "torch_rng": torch.get_rng_state(), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()`; a state from another size or model is a one-line error."""
        if tuple(state["z"].shape) != tuple(self.z.shape):
            raise VqclipError(f"the saved state's latent is {list(state['z'].shape)} but this job's is "
                              f"{list(self.z.shape)} (size or model changed since it was saved); "
                              "restore them, or delete state.pt to start over")
        with torch.no_grad():
            self.z.copy_(state["z"].to(self.device))
            self.z_init.copy_(state["z_init"].to(self.device))
        saved, own = state["optimizer"]["param_groups"], self.optimizer.state_dict()["param_groups"]
        if [set(g) for g in saved] != [set(g) for g in own]:  # torch would fail only at the next step, on a KeyError
            raise VqclipError(f"the saved optimizer state is not one of this job's optimizer "
                              f"({self.cfg.optimizer.name}); restore optimizer.name in job.yaml, or delete state.pt "
                              "to start over")
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = int(state["step"])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])

    def run(self, callbacks: Iterable[Callback] = (), until: Optional[int] = None, trial: int = 0) -> GenerateResult:
        """Step until `until` (default `cfg.steps`) or until a callback returns True; then decode the final image.
        `trial` n >= 1 marks the events as trial steps of n starts (see candidates)."""
        callbacks, curve, stopped = list(callbacks), [], self.stopped_in_trials
        while self.step_count < (self.cfg.steps if until is None else until) and not stopped:
            event = self.step()
            event.trial = trial
            curve.append(event.loss)
            stopped = any([bool(cb(event)) for cb in callbacks])
        with torch.no_grad():
            final = self.decode().detach()
        return GenerateResult(final, self.z.detach().clone(), self.seed, self.step_count, curve, stopped, self.start)


class _InjectGrad(torch.autograd.Function):
    """Returns a precomputed loss whose gradient with respect to `source` is the precomputed `grad`."""

    @staticmethod
    def forward(ctx, source: Tensor, loss: Tensor, grad: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(grad)
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None


@contextlib.contextmanager
def seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Fork the global RNG (CPU, and CUDA when used) and seed it: the run is repeatable, the caller's RNG untouched."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        torch.manual_seed(seed)
        yield


def generate(cfg: GenerateConfig, models: Models, callbacks: Iterable[Callback] = (),
             device: Optional[torch.device] = None) -> GenerateResult:
    """Run one generation with the global RNG forked and seeded, so the same seed gives the same image."""
    device = device or pick_device(cfg.device)
    seed = resolve_seed(cfg.seed)
    with seeded(device, seed):
        callbacks = list(callbacks)
        return first_generation(cfg, models, device, seed, Generation, callbacks).run(callbacks)
