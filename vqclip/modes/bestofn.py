"""Best of several starts: a phase before the run, whose trials are optimised together as one batch and scored by
CLIP; the best start goes on, and the frames of its trials become the run's first frames.

How a VQGAN+CLIP run turns out depends a lot on its start, and much of it shows early. With `candidates.n` > 1,
n latents (each its own random codes, or all from the init image, parted by their own cutouts) run together as one
batch for `candidates.steps` steps, each step counting once; each start's image is then scored on
`candidates.views` augmented views against the job's prompts (the same loss the run minimises, lower is better),
and the best start continues alone to `steps` (`candidates.rank` k: the k-th best; a batch's `candidates.keep`
images are ranks 0, 1, ...). With `candidates.steps` >= `steps` the pick is of finished images.
The scoring models are the job's own CLIP models, or `candidates.clip`: a model the starts were not optimised
against is a fairer judge, since they learn to please the one they are optimised against. Same seed, same pick.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, replace
from typing import Optional

import torch
from torch import Tensor

from ..config import to_yaml
from ..nets.clip import ClipModel
from ..nets.device import amp_autocast, seeded
from ..optim.cutouts import Cutouts
from ..optim.losses import prompt_loss
from ..optim.loop import run_steps
from ..optim.objective import Objective
from ..optim.state import RunState

log = logging.getLogger("vqclip")


@torch.no_grad()
def start_scores(images: Tensor, judges: list[tuple[ClipModel, float]], targets: list[Tensor], weights: Tensor,
                 views: dict[int, Cutouts], device: torch.device, amp: Optional[torch.dtype] = None,
                 view_seed: int = 0) -> list[float]:
    """The weighted prompt loss of each start's image (images [n,3,H,W] in [0,1]) under the judges, lower is better
    (prompts' stops cut gradients only, never the loss's value, so they take no part in the score).
    The views are drawn once from `view_seed` (one draw per judge) and replayed on every start, so all starts are
    scored on the same crops, augments and noise."""
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


def _trials_key(cfg, seed: int) -> str:
    """What makes two jobs' trials the same batch: the job without the rank that goes on and without its folder."""
    same = replace(cfg, seed=seed, candidates=replace(cfg.candidates, rank=0), output=replace(cfg.output, dir=None))
    return to_yaml(same)


def trial_steps(cfg) -> int:
    """Steps the starts run together before the pick (0 when best-of-n is off): where the chosen one goes on from."""
    return min(cfg.candidates.steps, cfg.steps) if cfg.candidates.n > 1 else 0


@dataclass
class Pick:
    """The outcome of the trials: each start's score (lower is better), the chosen one, whether a callback stopped
    the trials (the run then ends with the chosen start at that step), and the loss curve of the trial steps."""

    scores: list[float]
    start: int
    stopped: bool
    curve: list[float] = field(default_factory=list)


def best_of_n(ctx, objective: Objective, state: RunState, frame_every: int = 0) -> Pick:
    """Run the `candidates.n` starts in `state` together for `candidates.steps` steps (callbacks that ask for the
    trials see them, with `trial` = n), score each start's image, and keep the best in `state`; the chosen start's
    images of the frame steps go to `ctx.frames`. A callback that stops the trials (Ctrl-C) ends them there: the best
    start at that step is kept."""
    cfg, models = ctx.cfg, ctx.models
    c, cut = cfg.candidates, cfg.cutouts
    judges = models.judges or models.clips
    views = {size: Cutouts(size, c.views, cut.pow, cut.min_size, cut.augments, cut.noise)
             for size in {clip.image_size for clip, _ in judges}}
    steps = trial_steps(cfg)
    held: list[tuple[int, Tensor]] = []  # (step, images [n,3,H,W]) of the frame steps

    def hold(event) -> None:
        if frame_every > 0 and event.step % frame_every == 0:
            held.append((event.step, event.image.detach().cpu()))

    key = _trials_key(cfg, ctx.seed)
    memo = ctx.trials if ctx.trials is not None and ctx.trials.get("key") == key else None
    if memo is not None:  # another image of the same batch ran these trials: go on from their end, bit for bit
        log.info("going on from the trials of the %d starts already run", c.n)
        state.load_state_dict(copy.deepcopy(memo["state"]))  # a copy: the optimizer steps the tensors it loads
        held, curve, stopped, scores = memo["held"], memo["curve"], memo["stopped"], memo["scores"]
    else:
        log.info("trying %d starts together for %d steps; the best-scored one goes on", c.n, steps)
        curve, stopped = run_steps(state, objective, ctx.lr_at, steps, cfg.steps, [hold, *ctx.trial_callbacks],
                                   trial=c.n)
        # a copy (the optimizer's state_dict shares its tensors, which keep() replaces), with the global RNG as the
        # trials left it (the scoring below runs in its own fork)
        trials_end = copy.deepcopy(state.state_dict()) if ctx.trials is not None else None
        with torch.no_grad():
            images = objective.decode(state.z).detach()
        targets = objective.targets if judges is models.clips else objective.embed_targets(objective.prompts, judges)
        scores = start_scores(images, judges, targets, objective.weights_at(state.step), views, ctx.device,
                              objective.amp, ctx.seed)
        if ctx.trials is not None:
            ctx.trials.clear()
            ctx.trials.update(key=key, state=trials_end, held=held, curve=curve, stopped=stopped, scores=scores)
    best = sorted(range(len(scores)), key=scores.__getitem__)[c.rank]  # rank 0: the best; keep's images go down
    log.info("start %d of %d scored %s (%s)", best + 1, c.n, "best" if c.rank == 0 else f"#{c.rank + 1}",
             ", ".join(f"{s:.4f}" for s in scores))
    if stopped:
        log.info("stopped during the trials: the best start at step %d goes on", state.step)
    state.keep(best)
    if ctx.frames is not None:
        for step, frame in held:
            ctx.frames.write(step, frame[best:best + 1])
    return Pick(scores, best, stopped, curve)
