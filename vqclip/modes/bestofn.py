"""Best of several starts: the first part of a run, whose trials optimise the starts together as one batch and CLIP
scores them; the best start goes on with its optimiser state to the end of the run.

How a VQGAN+CLIP run turns out depends a lot on its start, and much of it shows early. With `candidates.n` > 1,
n latents (each its own random codes, or all from the init image, parted by their own cutouts) run together as one
batch for the trial steps (`candidates.steps`: a share of `steps` below 1, else a number of steps), each step
counting once; each start's image is then scored on `candidates.views` augmented views against the job's prompts
(the same loss the run minimises, lower is better), and the best start continues alone to `steps`
(`candidates.rank` k: the k-th best; a batch's `candidates.keep` images are ranks 0, 1, ...).
The starts are also scored during the trials (every frame step, and a few times more for the preview): the start
ranked to go on so far is the one the frames, `StepEvent.preview` and a stopped run's result show. A run stopped
during the trials keeps every start in its state, so a resume goes on with the trials and picks as if never stopped.
The scoring models are the job's own CLIP models, or `candidates.clip`: a model the starts were not optimised
against is a fairer judge, since they learn to please the one they are optimised against. Same seed, same pick.
A steered run's steers take effect after the pick (the trial steps are the run's own first steps, and the starts are
scored on the job's prompts): one sent during the trials is recorded at the first step after them, and a pause holds
the trials too, so the recorded job replays the run exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..config import to_yaml
from ..nets.clip import ClipModel
from ..nets.device import seeded
from ..optim.coverage import cover_weights, coverage
from ..optim.cutouts import Cutouts
from ..optim.loop import AfterStep, StepEvent, run_steps
from ..optim.objective import Objective
from ..optim.scoring import Scorer
from ..optim.state import RunState
from ..optim.steer import Steered

log = logging.getLogger("vqclip")

SCORINGS = 5  # times the starts are scored during the trials for the preview, besides the frame steps and the pick


@torch.no_grad()
def start_scores(images: Tensor, judges: list[tuple[ClipModel, float]], targets: list[Tensor], weights: Tensor,
                 views: dict[int, Cutouts], device: torch.device, amp: Optional[torch.dtype] = None,
                 view_seed: int = 0, regions: Optional[tuple[Tensor, list[int]]] = None) -> list[float]:
    """The weighted prompt loss of each start's image (images [n,3,H,W] in [0,1]) under the judges, lower is better
    (prompts' stops cut gradients only, never the loss's value, so they take no part in the score).
    The views are drawn once from `view_seed` (one draw per judge) and replayed on every start, so all starts are
    scored on the same crops, augments and noise. `regions` (masks [R,H,W], each prompt's mask index or -1) weights
    each view by its coverage of a region prompt's region, as the run's loss does (vqclip.optim.coverage)."""
    total = sum(w for _, w in judges if w > 0)
    _, _, h, w = images.shape
    with seeded(device, view_seed):
        draws = [views[clip.image_size].draw(1, h, w) if weight > 0 else None for clip, weight in judges]
    scorers = [Scorer(clip.encode_image, amp, device.type) for clip, _ in judges]
    covers = [None if draw is None or regions is None or regions[0] is None else
              cover_weights(coverage(regions[0], draw, clip.image_size, views[clip.image_size].augment), regions[1], 1)
              for (clip, _), draw in zip(judges, draws)]
    scores = []
    for k in range(len(images)):
        score = 0.0
        for (clip, weight), target, draw, scorer, cover in zip(judges, targets, draws, scorers, covers):
            if draw is None:
                continue
            score += weight / total * scorer(views[clip.image_size].apply(images[k:k + 1], draw), target,
                                             weights, None, cover).item()
        scores.append(score)
    return scores


def _trials_key(cfg, seed: int) -> str:
    """What makes two jobs' trials the same batch: the job without the rank that goes on and without its folder."""
    same = replace(cfg, seed=seed, candidates=replace(cfg.candidates, rank=0), output=replace(cfg.output, dir=None))
    return to_yaml(same)


def trial_steps(cfg) -> int:
    """Steps the starts run together before the pick (0 when best-of-n is off): `candidates.steps` x `steps` (rounded,
    at least 1) when it is below 1, else that many steps; never more than `steps`."""
    c = cfg.candidates
    if c.n <= 1 or cfg.steps <= 0:
        return 0
    wanted = math.floor(c.steps * cfg.steps + 0.5) if c.steps < 1 else int(c.steps)
    return min(max(wanted, 1), cfg.steps)


def ranked(scores: list[float], rank: int) -> int:
    """The start at `rank` (0: the lowest score, the best) of the scores."""
    return sorted(range(len(scores)), key=scores.__getitem__)[rank]


class Ranking:
    """Scores the starts' images [n,3,H,W] in [0,1] (`start_scores` on the job's views, seeded by the run's seed)."""

    def __init__(self, ctx, objective: Objective):
        cfg, models = ctx.cfg, ctx.models
        cut = cfg.cutouts
        self.judges = models.judges or models.clips
        self.views = {size: Cutouts(size, cfg.candidates.views, cut.pow, cut.min_size, cut.augments, cut.noise)
                      for size in {clip.image_size for clip, _ in self.judges}}
        self.targets = objective.targets if self.judges is models.clips else objective.embed_targets(
            objective.prompts, self.judges)
        self.objective, self.device, self.seed = objective, ctx.device, ctx.seed

    def scores(self, images: Tensor, step: int) -> list[float]:
        """Each start's score at `step` (the prompts' weights of that step), lower is better."""
        return start_scores(images, self.judges, self.targets, self.objective.weights_at(step), self.views,
                            self.device, self.objective.amp, self.seed,
                            (self.objective.regions, self.objective.region_of))


@dataclass
class Pick:
    """The outcome of the trials: each start's score (lower is better), the chosen one, whether a callback stopped
    the trials (the state then still holds every start, at that step), and the loss curve of the trial steps (the
    mean over the starts)."""

    scores: list[float]
    start: int
    stopped: bool
    curve: list[float] = field(default_factory=list)


def best_of_n(ctx, objective: Objective, state: RunState, frame_every: int = 0,
              hooks: Sequence[AfterStep] = (), steer: Optional[Steered] = None) -> Pick:
    """Run the `candidates.n` starts in `state` together up to the trial steps (from `state.step`: a resumed run goes
    on with its trials), then score each start's image and keep the chosen one in `state`. Callbacks that ask for
    the trials see them (`trial` = n, `best` the start ranked to go on so far), and that start's image goes to
    `ctx.frames` at the frame steps; `hooks` (a story's fade) and those of `ctx` (the state saver) run after each
    step. A callback that stops the trials (Ctrl-C) ends them there: `state` keeps every start, so that a resume
    goes on with them. `steer` (a steered run) holds the trials while paused; its changes wait for the pick."""
    cfg, c = ctx.cfg, ctx.cfg.candidates
    steps = trial_steps(cfg)
    ranking = Ranking(ctx, objective)
    every = max(1, steps // SCORINGS)
    held: list[tuple[int, Tensor, list[float]]] = []  # (step, images [n,3,H,W], scores) of the frame steps, kept
    # for a batch's other images
    lead = [None]  # the start ranked to go on at the latest scoring of this process

    def watch(event: StepEvent) -> bool:
        framed = frame_every > 0 and event.step % frame_every == 0
        if lead[0] is None or framed or event.step % every == 0:
            scores = ranking.scores(event.image, event.step)
            lead[0] = ranked(scores, c.rank)
            if framed and ctx.frames is not None:
                ctx.frames.write(event.step, event.image[lead[0]:lead[0] + 1])
            if framed and ctx.trials is not None:  # for the other images of the batch (their ranks' frames)
                held.append((event.step, event.image.detach().cpu(), scores))
        event = replace(event, best=lead[0])
        return any([bool(cb(event)) for cb in ctx.trial_callbacks])  # each callback sees every step

    key = _trials_key(cfg, ctx.seed)
    memo = ctx.trials if ctx.trials is not None and ctx.trials.get("key") == key else None
    if memo is not None:  # another image of the same batch ran these trials: go on from their end, bit for bit
        log.info("going on from the trials of the %d starts already run", c.n)
        state.load_state_dict(memo["state"])  # loads a copy (RunState.load_state_dict): the memo stays as it is
        held, curve, stopped, scores = memo["held"], memo["curve"], memo["stopped"], memo["scores"]
        if ctx.frames is not None:  # its frames: the start of its own rank at each frame step
            for step, images, at in held:
                k = ranked(at, c.rank)
                ctx.frames.write(step, images[k:k + 1])
    else:
        if state.step < steps:
            log.info("trying %d starts together for %d of the %d steps%s; the best-scored one goes on", c.n, steps,
                     cfg.steps, f" (from step {state.step})" if state.step else "")
        curve, stopped = run_steps(state, objective, ctx.lr_at, steps, cfg.steps, [watch], [*hooks, *ctx.after],
                                   trial=c.n, steer=steer)
        # a copy (RunState.state_dict), with the global RNG as the trials left it (the scoring below runs in its own
        # fork)
        trials_end = state.state_dict() if ctx.trials is not None else None
        with torch.no_grad():
            images = objective.decode(state.z).detach()
        scores = ranking.scores(images, state.step)
        if ctx.trials is not None:
            ctx.trials.clear()
            ctx.trials.update(key=key, state=trials_end, held=held, curve=curve, stopped=stopped, scores=scores)
    best = sorted(range(len(scores)), key=scores.__getitem__)[c.rank]  # rank 0: the best; keep's images go down
    log.info("start %d of %d scored %s (%s)", best + 1, c.n, "best" if c.rank == 0 else f"#{c.rank + 1}",
             ", ".join(f"{s:.4f}" for s in scores))
    if state.step < steps:  # stopped before the pick: every start stays in the state, the trials go on at resume
        log.info("stopped during the trials at step %d: start %d is the result so far; `vqclip resume` goes on with "
                 "all %d starts", state.step, best + 1, c.n)
    else:
        state.keep(best)
    return Pick(scores, best, stopped, curve)
