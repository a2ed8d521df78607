"""A run's parts put together as the still mode puts them (story targets, the objective, the state, the scheduled
learning rate), for tests that step a run by hand."""

from __future__ import annotations

from typing import Optional

import torch

from vqclip.modes.story import story_targets
from vqclip.optim.loop import take_step
from vqclip.optim.objective import Objective
from vqclip.optim.schedules import learning_rate
from vqclip.optim.state import RunState


class Run:
    """The objective and the state of a job, stepped by hand: `step()` is one update of the one loop."""

    def __init__(self, cfg, models, device: torch.device = torch.device("cpu"), seed: int = 0, starts: int = 1,
                 clock=None, length: Optional[int] = None):
        story = story_targets(cfg, device, length, clock)
        self.cfg, self.models = cfg, models
        self.objective = Objective(cfg, models, device, story.prompts if story else None,
                                   story.weights if story else None, batch=starts)
        self.story = story.schedule if story else None
        self.state = RunState.initial(cfg, self.objective.drawer, device, seed, starts)

    def __getattr__(self, name):  # targets, weights, guide, cutouts, clip_terms, ... of the objective; z, ... of the state
        for part in ("objective", "state"):
            if hasattr(self.__dict__.get(part), name):
                return getattr(self.__dict__[part], name)
        raise AttributeError(name)

    @property
    def step_count(self) -> int:
        return self.state.step

    @step_count.setter
    def step_count(self, value: int) -> None:
        self.state.step = value

    def lr_at(self, step: int) -> float:
        opt = self.cfg.optimizer
        return learning_rate(opt.schedule, opt.lr, opt.min_factor, step, self.cfg.steps)

    def step(self, views=None):
        return take_step(self.state, self.objective, self.lr_at(self.state.step), self.cfg.steps, views)

    def decode(self, z=None):
        return self.objective.decode(self.state.z if z is None else z)

    def losses(self, image, views=None):
        return self.objective.losses(image, self.state.z, self.state.z_init, self.state.step, views)


class Sink:
    """A frame sink that keeps what it is given: (index, image) in order."""

    def __init__(self):
        self.written = []

    def write(self, index, image):
        self.written.append((index, image.detach().clone()))

    def existing(self):
        return []
