"""The one optimisation loop: each step decodes the latents, scores them with the objective, updates them, and
reports a read-only `StepEvent`; hooks after the step (a zoom move, the state saver) see the state, callbacks only
the event, and any of them may stop the run at the end of the step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor

from ..files.images import to_pil
from .cutouts import CutoutDraw
from .objective import Objective
from .state import RunState


@dataclass(frozen=True)
class StepEvent:
    """What a callback sees after each update: `image` [B,3,H,W] in [0,1] is the one scored at `step` (B = 1, or the
    number of starts during best-of-n trials, when `trial` = B)."""

    step: int  # updates done before this image was scored (0 = the initial image)
    total: int  # the steps of this run (a restyle: of this frame)
    loss: float
    losses: dict[str, float] = field(default_factory=dict)
    image: Optional[Tensor] = None
    trial: int = 0  # n >= 1: a trial step of n starts run together (best of n), not yet the run's
    frame: Optional[int] = None  # a restyle's input frame

    @property
    def preview(self):
        """The (first) image as an 8-bit PIL image."""
        return to_pil(self.image[:1])


Callback = Callable[[StepEvent], Optional[bool]]  # returns True to stop the run at the end of this step
AfterStep = Callable[[RunState, StepEvent], Optional[bool]]


def take_step(state: RunState, objective: Objective, lr: float, total: int = 0,
              views: Optional[list[CutoutDraw]] = None) -> StepEvent:
    """One update of the latents at learning rate `lr`; returns the event for the image that was scored (`views`:
    see `Objective.losses`)."""
    state.set_lr(lr)
    image = objective.decode(state.z)
    parts = objective.losses(image, state.z, state.z_init, state.step, views)
    loss = torch.stack(list(parts.values())).sum()
    state.optimizer.zero_grad(set_to_none=True)
    (loss * state.starts).backward()  # the sum over starts: each start gets the gradient it would get alone
    if objective.world > 1:  # a run across devices: each scored its share, the sums are the one-device values
        values = torch.stack([v.detach() for v in parts.values()])
        objective.all_reduce(state.z.grad, values)
        parts, loss = dict(zip(parts, values)), values.sum()
    step = state.step
    state.update(objective.z_min, objective.z_max)
    return StepEvent(step, total, loss.item(), {k: v.item() for k, v in parts.items()}, image.detach())


def run_steps(state: RunState, objective: Objective, lr_at: Callable[[int], float], until: int, total: int,
              callbacks: Iterable[Callback] = (), after: Iterable[AfterStep] = (), trial: int = 0,
              frame: Optional[int] = None) -> tuple[list[float], bool]:
    """Step until `state.step` reaches `until` or a callback or hook returns True; every callback and hook runs on
    each step (the stopping step included). Returns the loss curve of these steps and whether it was stopped."""
    callbacks, after, curve, stopped = list(callbacks), list(after), [], False
    while state.step < until and not stopped:
        event = take_step(state, objective, lr_at(state.step), total)
        if trial or frame is not None:
            event = StepEvent(event.step, event.total, event.loss, event.losses, event.image, trial, frame)
        curve.append(event.loss)
        stops = [bool(cb(event)) for cb in callbacks] + [bool(hook(state, event)) for hook in after]
        stopped = any(stops)
    return curve, stopped
