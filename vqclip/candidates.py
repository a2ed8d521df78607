"""Best of several starts: short trial runs from different seeds, scored by CLIP; the best-scored one goes on.

How a VQGAN+CLIP run turns out depends a lot on its seed, and much of it shows early. With `candidates.n` > 1,
each start runs `candidates.steps` steps, its image is scored on `candidates.views` augmented views against the
job's prompts (the same loss the run minimises, lower is better), and the best start continues to `steps`. The
scoring models are the job's own CLIP models, or `candidates.clip`: a model the starts were not optimised against
is a fairer judge, since they learn to please the one they are optimised against. Same seed, same pick.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import torch
from torch import Tensor

from .cutouts import Cutouts
from .models import ClipModel
from .prompts import prompt_loss

if TYPE_CHECKING:  # this module needs generator only lazily (generator imports it); the types only
    from .config import GenerateConfig
    from .generator import Callback, Generation, Models

log = logging.getLogger("vqclip")

GOLDEN = 0x9E3779B97F4A7C15  # odd 64-bit constant: start k's seed is seed + k * GOLDEN (mod 2**63), all distinct


def start_seeds(seed: int, n: int) -> list[int]:
    """The seeds of n starts: the job's own seed first (so n=1 is the plain run), then seeds derived from it."""
    return [seed] + [(seed + k * GOLDEN) % 2**63 for k in range(1, n)]


@torch.no_grad()
def start_score(image: Tensor, judges: list[tuple[ClipModel, float]], targets: list[Tensor], weights: Tensor,
                views: dict[int, Cutouts], device: torch.device, amp: Optional[torch.dtype] = None,
                view_seed: int = 0) -> float:
    """The weighted prompt loss of an image [1,3,H,W] in [0,1] under the judges (lower is better). The views come
    from `view_seed`, so every start is scored on the same crops and augments."""
    from .generator import seeded
    from .speed import amp_autocast

    total = sum(w for _, w in judges if w > 0)
    score = 0.0
    with seeded(device, view_seed):
        for (clip, weight), target in zip(judges, targets):
            if weight <= 0:
                continue
            with amp_autocast(device.type, amp):
                embeds = clip.encode_image(views[clip.image_size](image))
            score += weight / total * prompt_loss(embeds.float(), target, weights).item()
    return score


def trial_steps(cfg: GenerateConfig) -> int:
    """Steps each start runs before the pick (0 when best-of-n is off): where the chosen start goes on from."""
    return min(cfg.candidates.steps, cfg.steps) if cfg.candidates.n > 1 else 0


def total_steps(cfg: GenerateConfig) -> int:
    """Steps a fresh run takes in all: its own `steps`, plus the trial steps of the starts that do not go on."""
    return cfg.steps + (cfg.candidates.n - 1) * trial_steps(cfg)


def first_generation(cfg: GenerateConfig, models: Models, device: torch.device, seed: int,
                     make: Callable[..., Generation], callbacks: Sequence[Callback] = ()) -> Generation:
    """The Generation a run goes on with: `make(cfg, models, device, seed)`, or the best of `candidates.n` starts."""
    if cfg.candidates.n > 1:
        return best_start(cfg, models, device, seed, make, callbacks)[0]
    return make(cfg, models, device, seed)


def best_start(cfg: GenerateConfig, models: Models, device: torch.device, seed: int,
               make: Callable[..., Generation], callbacks: Sequence[Callback] = ()) -> tuple[Generation, list[float]]:
    """Run `cfg.candidates.n` starts for `cfg.candidates.steps` steps each (`make(cfg, models, device, seed)` builds
    one) and return the best-scored Generation, which goes on from there, with every start's score. Each trial step
    goes to `callbacks` as an event with `trial` = k; one that asks to stop (Ctrl-C) ends the trials there: the best
    of the starts tried so far is returned, marked `stopped_in_trials`, so that its `run` takes no step."""
    from .generator import seeded

    c, cut = cfg.candidates, cfg.cutouts
    judges = models.judges or models.clips
    steps = trial_steps(cfg)
    views = {size: Cutouts(size, c.views, cut.pow, cut.min_size, cut.augments, cut.noise)
             for size in {clip.image_size for clip, _ in judges}}
    log.info("trying %d starts for %d steps each; the best-scored one goes on", c.n, steps)
    starts: list[Generation] = []
    scores: list[float] = []
    targets: Optional[list[Tensor]] = None
    for k, s in enumerate(start_seeds(seed, c.n), 1):
        with seeded(device, s):
            gen = make(cfg, models, device, s)
            trial = gen.run(callbacks, until=steps, trial=k)
        image, stopped = trial.image, trial.stopped
        if targets is None:  # the same prompts for every start: embedded once
            targets = gen.targets if judges is models.clips else gen.embed_targets(gen.prompts, judges)
        weights = gen.weight_schedule(gen.step_count) if gen.weight_schedule else gen.weights
        scores.append(start_score(image, judges, targets, weights, views, device, gen.amp, seed))
        starts.append(gen)
        if stopped:
            log.info("stopped during the trials: the best of the %d starts tried goes on", len(starts))
            break
    best = min(range(len(scores)), key=scores.__getitem__)
    log.info("start %d of %d scored best (%s)", best + 1, len(scores), ", ".join(f"{s:.4f}" for s in scores))
    winner = starts[best]
    winner.stopped_in_trials = stopped
    winner.start_seed, winner.seed = winner.seed, seed  # the job's seed, which repeats this pick, is what is reported
    return winner, scores
