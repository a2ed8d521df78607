"""A still image: the job's prompts (or its story) optimised from the start latent, after best-of-n's trials when
the job asks for them, or from a saved state (resume); zoom runs add a hook after each step (zoom.py)."""

from __future__ import annotations

import torch

from ..optim.loop import AfterStep, run_steps
from ..optim.objective import Objective
from ..optim.state import RunState
from .base import GenerateResult, Mode, RunContext
from .bestofn import best_of_n
from .story import story_targets


class Still(Mode):
    """The plain run: story targets when the job has a story, best of n starts when it asks for them."""

    name = "still"

    def hooks(self, cfg, objective: Objective) -> list[AfterStep]:
        """What runs after each update besides the pipeline's own hooks (a zoom move)."""
        return []

    def run(self, ctx: RunContext) -> GenerateResult:
        cfg = ctx.cfg
        story = story_targets(cfg, ctx.device)
        starts = cfg.candidates.n if ctx.saved is None else 1  # a saved state is the chosen start's
        objective = Objective(cfg, ctx.models, ctx.device, story.prompts if story else None,
                              story.weights if story else None, batch=starts)
        state = RunState.initial(cfg, ctx.models.vqgan, objective.width, objective.height, ctx.device, ctx.seed,
                                 starts)
        curve, stopped, cut = [], False, False
        if ctx.saved is not None:
            state.load_state_dict(ctx.saved)
        elif starts > 1:
            pick = best_of_n(ctx, objective, state, self.frame_every(cfg))
            stopped = cut = pick.stopped
        if not stopped:
            curve, stopped = run_steps(state, objective, ctx.lr_at, cfg.steps, cfg.steps, ctx.callbacks,
                                       [*self.hooks(cfg, objective), *ctx.after])
        with torch.no_grad():
            final = objective.decode(state.z).detach()
        return GenerateResult(final, state.z.detach().clone(), ctx.seed, state.step, curve, stopped, state.start,
                              trials_cut=cut, state=state)
