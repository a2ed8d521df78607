"""What a run minimises: images decoded from the latents, cut into augmented cutouts and scored by each CLIP against
the prompts (the weights of the step's story keyframe, or the prompts' own), plus the job's other terms (init, TV,
guide, palette, symmetry, tile: vqclip.terms).

Built once per job from the loaded models (prompt embeddings are computed once here); it holds no run state: the
latents and the step come in with each call. No file I/O happens in the loss.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import Callable, Optional

import torch
from torch import Tensor

from ..draw.registry import load as load_drawer
from ..draw.vqgan import decode_image  # noqa: F401  (where the tests and tools found it before vqclip.draw)
from ..files.images import open_rgb
from ..nets.device import autocast_dtype, compiled
from ..nets.load import Models
from ..terms.base import build_terms
from .coverage import cover_weights, coverage, region_masks
from .cutouts import CutoutDraw, Cutouts
from .losses import stops_tensor, weights_tensor
from .inits import canvas_size
from .prompts import Prompt, check_has_target, parse_job_prompts
from .scoring import Scorer, shard_of

log = logging.getLogger("vqclip")

WeightSchedule = Callable[[int], Tensor]  # step -> prompt weights [M]


def rounded_size(size: list[int], factor: int) -> tuple[int, int]:
    """(width, height) rounded to multiples of the image model's factor, with a notice when that changes them."""
    w, h = (max(factor, round(s / factor) * factor) for s in size)
    if (w, h) != tuple(size):
        log.info("size %dx%d rounded to %dx%d (a multiple of the image model's factor %d)", size[0], size[1], w, h,
                 factor)
    return w, h


def clip_term_names(names: list[str]) -> list[str]:
    """The loss-term name of each CLIP model: `clip:NAME`, or `clip:NAME#i` (its position) for a name given twice
    (two tags of one architecture), so that no term replaces another in the sum."""
    return [f"clip:{n}" if names.count(n) == 1 else f"clip:{n}#{i}" for i, n in enumerate(names)]


class Objective:
    """The loss of a job for latents of `batch` starts at a time.

    Args:
        cfg: the resolved job (`GenerateConfig`).
        models: its loaded networks.
        device: where they run.
        prompts: the targets (default: the job's prompt, negatives and image prompts); a story gives the union of
            its keyframes' texts and `schedule`, the weights [M] of each step.
        batch: how many starts are optimised together (best of n); sets the precision and the memory plan.
    """

    def __init__(self, cfg, models: Models, device: torch.device, prompts: Optional[list[Prompt]] = None,
                 schedule: Optional[WeightSchedule] = None, batch: int = 1):
        self.cfg, self.models, self.device = cfg, models, device
        kind = load_drawer(cfg.drawer.name)
        size = canvas_size(cfg.size, cfg.init.extend)  # an outpaint's canvas: the size and its extension
        self.width, self.height = rounded_size(size, kind.size_factor(cfg, models))
        # the precision of the whole job, decided by the pixels a step decodes with all of best-of-n's starts: the
        # same for the trials, the chosen start going on alone, and a resume of it
        self.amp = autocast_dtype(cfg.precision, device, max(batch, cfg.candidates.n) * self.width * self.height)
        # 1. Targets: text and image prompts, embedded once per CLIP model
        self.prompts = prompts if prompts is not None else parse_job_prompts(cfg.prompt, cfg.negative,
                                                                             cfg.image_prompts)
        check_has_target(self.prompts)
        self.targets = self.embed_targets(self.prompts)
        self.weights = weights_tensor(self.prompts, device)
        self.stops = stops_tensor(self.prompts, device)  # [M] or None: where a prompt stops pulling
        self.regions, self.region_of = region_masks(self.prompts, self.width, self.height, device)  # [R,H,W] or None
        self.schedule = schedule
        self.terms = build_terms(cfg, models, device, self.amp)  # the terms beside CLIP, in the order they are summed
        self.guide = next((t.classifier for t in self.terms if t.name == "guide"), None)
        self._aimed: Optional[tuple[str, ...]] = None  # the texts the guide was last aimed from (see `_aim_guide`)
        self._aim_guide(self.host_weights_at(0))
        # 2. Cutout samplers, one per CLIP input size, and each CLIP's share of the loss
        c = cfg.cutouts
        self.cutouts = {size: Cutouts(size, c.n, c.pow, c.min_size, c.augments, c.noise)
                        for size in {clip.image_size for clip, _ in models.clips}}
        total = sum(w for _, w in models.clips if w > 0)
        self.clip_weights = [w / total for _, w in models.clips]
        self.clip_terms = clip_term_names([clip.name for clip, _ in models.clips])
        # 3. What is optimised and how it becomes the image (vqclip.draw), with its speed and memory plan
        self.drawer = kind(cfg, models, device, self.width, self.height, self.amp, batch)
        # 4. One run across devices (torch.distributed started by vqclip.runs.devices): this process scores its share
        # of every step's cutouts, all drawn here as on one device; its `Scorer` sums the shares' gradients
        self.rank, self.world = shard_of()
        self._encode = {id(clip): compiled(clip.encode_image, f"CLIP {clip.name}") if cfg.compile else clip.encode_image
                        for clip, _ in models.clips}

    @property
    def checkpoint(self) -> bool:
        """Whether the drawer's decoder is checkpointed (the memory plan)."""
        return self.drawer.checkpoint

    @property
    def micro_batch(self) -> int:
        """Cutouts CLIP scores at a time (0: all in one pass), from the drawer's memory plan."""
        return self.drawer.micro_batch

    @property
    def lean(self) -> bool:
        """Whether the drawer decodes with the lean decoder."""
        return self.drawer.lean

    def speed_options(self) -> dict:
        """The speed/memory choices in effect (for benchmarks and logs): the run's and its drawer's."""
        return {"precision": "bf16" if self.amp == torch.bfloat16 else "fp32", **self.drawer.speed_options(),
                "micro_batch": self.micro_batch, "compile": self.cfg.compile}

    @torch.no_grad()
    def embed_targets(self, prompts: list[Prompt], clips: Optional[list] = None) -> list[Tensor]:
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
        """Replace the targets (their weights and stops become the prompts' own); embeddings are computed once here."""
        check_has_target(prompts)
        self.prompts, self.targets = prompts, self.embed_targets(prompts)
        self.weights, self.schedule, self._aimed = weights_tensor(prompts, self.device), None, None
        self.regions, self.region_of = region_masks(prompts, self.width, self.height, self.device)
        self.stops = stops_tensor(prompts, self.device)
        self._aim_guide(self.host_weights_at(0))

    def weights_at(self, step: int) -> Tensor:
        """The prompt weights [M] in effect at a step: the story's schedule, else the prompts' own weights."""
        return self.schedule(step) if self.schedule else self.weights

    def host_weights_at(self, step: int) -> list[float]:
        """The prompt weights at a step as numbers, computed on the host (a story's schedule gives them as `host`):
        aiming the guide never waits for the device."""
        if self.schedule is None:
            return [float(p.weight) for p in self.prompts]
        host = getattr(self.schedule, "host", None)
        return list(host(step)) if host is not None else self.schedule(step).tolist()

    def _aim_guide(self, weights: list[float]) -> None:
        """Point classifier guidance at the label named by the text prompts that pull at this step (positive weight,
        the strongest first), so a story re-aims it as its prompts change; none named: no guidance, with a notice. A
        region prompt never aims it: the classifier judges the whole image, which a region's text does not describe."""
        if self.guide is None:
            return
        pulling = sorted(((-w, i) for i, (p, w) in enumerate(zip(self.prompts, weights))
                          if not p.image and w > 0 and p.region is None))
        texts = tuple(self.prompts[i].text for _, i in pulling)
        if texts == self._aimed:
            return
        self._aimed = texts
        self.guide.aim(list(texts))
        if self.guide.label is None:
            log.info("guide: the prompt names none of %s; no classifier guidance%s",
                     ", ".join(x for x in self.guide.guide.labels if not x.startswith("_")),
                     f" while '{texts[0]}' leads" if self.schedule and texts else "")

    def decode(self, z: Tensor) -> Tensor:
        """The images [B,3,H,W] in [0,1] of the drawer's parameters z [B,...] (VQGAN: latents, quantized
        straight-through), as the terms show them (decoded in their contexts: a tile's circular padding; then e.g.
        snapped to a hard palette)."""
        for term in self.terms:  # an edit: the gradient reaches only the parameters under its mask
            z = term.drawn(z, self.drawer)
        with ExitStack() as looks:
            for term in self.terms:
                looks.enter_context(term.decoding(self.drawer))
            image = self.drawer.decode(z)
        for term in self.terms:
            image = term.shown(image)
        return image

    def project(self, z: Tensor) -> None:
        """Bring parameters z [B,...] back into the drawer's box in place, after an optimiser step."""
        self.drawer.project(z)

    def losses(self, image: Tensor, z: Tensor, z_init: Tensor, step: int,
               views: Optional[list[CutoutDraw]] = None) -> dict[str, Tensor]:
        """Named loss terms at `step` for images [B,3,H,W] in [0,1] decoded from z [B,E,h,w], each the mean over the B
        starts; their sum is what is minimised. `views` (one `CutoutDraw` per CLIP model) replays given cutouts
        instead of drawing new ones (tests compare a step with the reference loop this way)."""
        weights = self.weights_at(step)
        if self.guide is not None:
            self._aim_guide(self.host_weights_at(step))
        parts = {}
        b, _, h, w = image.shape
        seen = image
        for term in self.terms:  # e.g. a tile's random roll, drawn before the cutouts
            seen = term.viewed(seen)
        for k, ((clip, _), share, targets) in enumerate(zip(self.models.clips, self.clip_weights, self.targets)):
            if share <= 0:
                continue
            cut = self.cutouts[clip.image_size]
            draw = views[k] if views is not None else cut.draw(b, h, w)
            batch = cut.apply(seen, draw)
            cover = None  # region prompts: each cutout weighted by its share inside the region (vqclip.optim.coverage)
            if self.regions is not None:
                cover = cover_weights(coverage(self.regions, draw, cut.cut_size, cut.augment), self.region_of, b)
            parts[self.clip_terms[k]] = share * self._scorer(clip)(batch, targets, weights, self.stops, cover)
        # the other terms every device computes alike (same image, same random stream), in full
        for term in self.terms:
            value = term(image, z, z_init, step)
            if value is not None:
                parts[term.name] = value
        return parts

    def _scorer(self, clip) -> Scorer:
        """How `clip` scores this step's cutouts: under the run's autocast, `micro_batch` at a time, this device's
        share of them in a run across devices (each device then holds the one-device gradient)."""
        return Scorer(self._encode[id(clip)], self.amp, self.device.type, self.micro_batch, (self.rank, self.world))
