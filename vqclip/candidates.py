"""Best of several starts: trial runs optimised together as one batch, scored by CLIP; the best one goes on.

How a VQGAN+CLIP run turns out depends a lot on its start, and much of it shows early. With `candidates.n` > 1,
n latents (each its own random codes, or all from the init image, parted by their own cutouts) run together as one
batch for `candidates.steps` steps, each step counting once; each start's image is then scored on
`candidates.views` augmented views against the job's prompts (the same loss the run minimises, lower is better),
and the best start continues alone to `steps`. With `candidates.steps` >= `steps` the pick is of finished images.
The scoring models are the job's own CLIP models, or `candidates.clip`: a model the starts were not optimised
against is a fairer judge, since they learn to please the one they are optimised against. Same seed, same pick.
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


@torch.no_grad()
def start_scores(images: Tensor, judges: list[tuple[ClipModel, float]], targets: list[Tensor], weights: Tensor,
                 views: dict[int, Cutouts], device: torch.device, amp: Optional[torch.dtype] = None,
                 view_seed: int = 0) -> list[float]:
    """The weighted prompt loss of each start's image (images [n,3,H,W] in [0,1]) under the judges, lower is better.
    The views are drawn once from `view_seed` (one draw per judge) and replayed on every start, so all starts are
    scored on the same crops, augments and noise."""
    from .generator import seeded
    from .speed import amp_autocast

    total = sum(w for _, w in judges if w > 0)
    _, _, h, w = images.shape
    with seeded(device, view_seed):
        draws = [views[clip.image_size].draw(1, h, w) if weight > 0 else None for clip, weight in judges]
    scores = []
    for k in range(len(images)):
        score = 0.0
        for (clip, weight), target, draw in zip(judges, targets, draws):
            if draw is None:
                continue
            with amp_autocast(device.type, amp):
                embeds = clip.encode_image(views[clip.image_size].apply(images[k:k + 1], draw))
            score += weight / total * prompt_loss(embeds.float(), target, weights).item()
        scores.append(score)
    return scores


def trial_steps(cfg: GenerateConfig) -> int:
    """Steps the starts run together before the pick (0 when best-of-n is off): where the chosen one goes on from."""
    return min(cfg.candidates.steps, cfg.steps) if cfg.candidates.n > 1 else 0


def first_generation(cfg: GenerateConfig, models: Models, device: torch.device, seed: int,
                     make: Callable[..., Generation], callbacks: Sequence[Callback] = ()) -> Generation:
    """The Generation a run goes on with: `make(cfg, models, device, seed)`, or the best of `candidates.n` starts."""
    if cfg.candidates.n > 1:
        return best_start(cfg, models, device, seed, make, callbacks)[0]
    return make(cfg, models, device, seed)


def best_start(cfg: GenerateConfig, models: Models, device: torch.device, seed: int,
               make: Callable[..., Generation], callbacks: Sequence[Callback] = ()) -> tuple[Generation, list[float]]:
    """Run `cfg.candidates.n` starts together for `cfg.candidates.steps` steps (`make(cfg, models, device, seed,
    starts=n)` builds them) and return the Generation gone on with the best-scored one, with every start's score.
    Trial steps go to `callbacks` as events with `trial` = n; one that asks to stop (Ctrl-C) ends the trials there:
    the best start at that step is returned, marked `stopped_in_trials`, so that its `run` takes no step."""
    c, cut = cfg.candidates, cfg.cutouts
    judges = models.judges or models.clips
    views = {size: Cutouts(size, c.views, cut.pow, cut.min_size, cut.augments, cut.noise)
             for size in {clip.image_size for clip, _ in judges}}
    steps = trial_steps(cfg)
    log.info("trying %d starts together for %d steps; the best-scored one goes on", c.n, steps)
    gen = make(cfg, models, device, seed, starts=c.n)
    trial = gen.run(callbacks, until=steps, trial=c.n)
    targets = gen.targets if judges is models.clips else gen.embed_targets(gen.prompts, judges)
    scores = start_scores(trial.image, judges, targets, gen.weights_at(gen.step_count), views, device, gen.amp, seed)
    best = min(range(len(scores)), key=scores.__getitem__)
    log.info("start %d of %d scored best (%s)", best + 1, c.n, ", ".join(f"{s:.4f}" for s in scores))
    if trial.stopped:
        log.info("stopped during the trials: the best start at step %d goes on", gen.step_count)
    gen.keep(best)
    gen.stopped_in_trials = trial.stopped
    return gen, scores
