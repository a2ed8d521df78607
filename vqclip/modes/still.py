"""A still image: the job's prompts (or its story, faded at its keyframes) optimised from the start latent, after
best-of-n's trials when the job asks for them, or from a saved state (resume: the chosen start's, or every start's
when it was saved during the trials); zoom runs add a hook after each step (zoom.py)."""

from __future__ import annotations

import torch

from ..errors import VqclipError
from ..optim.loop import AfterStep, run_steps
from ..optim.objective import Objective
from ..optim.steer import Steered
from .base import GenerateResult, Mode, RunContext, start_run
from .bestofn import best_of_n, trial_steps
from .story import StoryFade, story_targets


class Still(Mode):
    """The plain run: story targets when the job has a story, best of n starts when it asks for them."""

    name = "still"
    steerable = True

    def hooks(self, cfg, objective: Objective) -> list[AfterStep]:
        """What runs after each update besides the pipeline's own hooks (a zoom move)."""
        return []

    def run(self, ctx: RunContext) -> GenerateResult:
        cfg = ctx.cfg
        story = story_targets(cfg, ctx.device)
        starts = cfg.candidates.n if ctx.saved is None else saved_starts(ctx.saved, cfg.candidates.n)
        objective, state = start_run(cfg, ctx.models, ctx.device, ctx.seed, story, starts)
        fade = [StoryFade(story.schedule, cfg.story_fade, objective)] if story and cfg.story_fade > 0 else []
        curve, stopped, start = [], False, 0
        if ctx.saved is not None:
            state.load_state_dict(ctx.saved)
        steer = None
        if cfg.steer or ctx.steering is not None:  # a job's steers rebuild its objective as `start_run` built it;
            # steers sent during best-of-n's trials take effect after the pick (a pause holds the trials too)
            steer = Steered(cfg, lambda job: Objective(job, ctx.models, ctx.device, batch=starts), ctx.steering,
                            trial_steps(cfg))
        if starts > 1:  # the trials, from the start or from where a saved state left them
            pick = best_of_n(ctx, objective, state, self.frame_every(cfg), fade, steer)
            curve, stopped, start = list(pick.curve), pick.stopped, pick.start
        if not stopped:
            more, stopped = run_steps(state, objective, ctx.lr_at, cfg.steps, cfg.steps, ctx.callbacks,
                                      [*fade, *self.hooks(cfg, objective), *ctx.after], steer=steer)
            curve += more
        if steer is not None and steer.objective is not None:  # the image as the job of the last step shows it
            objective = steer.objective
        if state.starts > 1:  # stopped during the trials: the result is the start ranked to go on
            z = state.z[start:start + 1].detach()
        else:
            z, start = state.z.detach(), state.start
        with torch.no_grad():
            final = objective.decode(z).detach()
        return GenerateResult(final, z.clone(), ctx.seed, state.step, curve, stopped, start, state=state)


def saved_starts(saved: dict, n: int) -> int:
    """The starts a saved state holds: 1 (the chosen one), or every start of best-of-n's trials (then as many as the
    job's `candidates.n`)."""
    rows = int(saved["z"].shape[0])
    if rows > 1 and rows != n:
        raise VqclipError(f"the saved state holds the {rows} starts of best-of-n trials, but the job asks for "
                          f"candidates.n={n}; restore it, or delete state.pt to start over")
    return rows
