"""The one optimisation loop: each step decodes the latents, scores them with the objective, updates them, and
reports a read-only `StepEvent`; hooks after the step (a zoom move, the state saver) see the state, callbacks only
the event, and any of them may stop the run at the end of the step."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Optional, Union

import torch
from torch import Tensor

from ..files.images import to_pil
from .cutouts import CutoutDraw
from .objective import Objective
from .state import RunState
from .steer import Steered


@dataclass(frozen=True)
class StepEvent:
    """What a callback sees after each update: `image` [B,3,H,W] in [0,1] is the one scored at `step` (B = 1, or the
    number of starts during best-of-n trials, when `trial` = B, and `best` is the start that would go on were the
    trials to end now). The loss stays a device tensor until `loss` or `losses` is read: only a callback that asks
    for the number waits for the GPU (no host sync inside a step)."""

    step: int  # updates done before this image was scored (0 = the initial image)
    total: int  # the steps of this run (a restyle: of this frame)
    loss_value: Union[float, Tensor]  # the summed loss: a float, or a detached 0-d tensor read when asked
    loss_terms: dict[str, Union[float, Tensor]] = field(default_factory=dict)  # the named terms, likewise
    image: Optional[Tensor] = None
    trial: int = 0  # n >= 1: a trial step of n starts run together (best of n), not yet the run's
    frame: Optional[int] = None  # a restyle's input frame
    best: int = 0  # during trials: the start ranked to go on at the latest scoring (the one `preview` shows)

    @functools.cached_property
    def loss(self) -> float:
        """The summed loss as a number (waits for the device the first time it is read)."""
        return float(self.loss_value)

    @functools.cached_property
    def losses(self) -> dict[str, float]:
        """The named loss terms as numbers (one transfer for all of them)."""
        names, values = list(self.loss_terms), list(self.loss_terms.values())
        if values and all(torch.is_tensor(v) for v in values):
            values = torch.stack([v.float() for v in values]).tolist()
        return {k: float(v) for k, v in zip(names, values)}

    @property
    def preview(self):
        """The image that is the run's result so far as an 8-bit PIL image (during trials: start `best`'s)."""
        return to_pil(self.image[self.best:self.best + 1])


def loss_numbers(curve: list[Union[float, Tensor]]) -> list[float]:
    """A loss curve of floats and/or 0-d tensors as floats, with one device transfer for the tensors."""
    tensors = [x for x in curve if torch.is_tensor(x)]
    if not tensors:
        return [float(x) for x in curve]
    read = iter(torch.stack([t.float().reshape(()) for t in tensors]).cpu().tolist())
    return [next(read) if torch.is_tensor(x) else float(x) for x in curve]


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
    step = state.step
    state.update(objective.project)
    return StepEvent(step, total, loss.detach(), {k: v.detach() for k, v in parts.items()}, image.detach())


def run_steps(state: RunState, objective: Objective, lr_at: Callable[[int], float], until: int, total: int,
              callbacks: Iterable[Callback] = (), after: Iterable[AfterStep] = (), trial: int = 0,
              frame: Optional[int] = None, steer: Optional[Steered] = None) -> tuple[list[float], bool]:
    """Step until `state.step` reaches `until` or a callback or hook returns True; every callback and hook runs on
    each step (the stopping step included); `steer` applies a steered run's changes at the start of each step.
    Returns the loss curve of these steps (read from the device once, at the end) and whether it was stopped."""
    callbacks, after, curve, stopped = list(callbacks), list(after), [], False
    while state.step < until and not stopped:
        lr = lr_at(state.step)
        if steer is not None:  # paused: waits here, between steps; changes sent meanwhile take effect now
            objective = steer.before(state.step, objective, state)
            lr = steer.lr(state.step, lr)
        event = take_step(state, objective, lr, total)
        if trial or frame is not None:
            event = replace(event, trial=trial, frame=frame)
        curve.append(event.loss_value)
        stops = [bool(cb(event)) for cb in callbacks] + [bool(hook(state, event)) for hook in after]
        stopped = any(stops) or (steer is not None and steer.stopping)
    return loss_numbers(curve), stopped
