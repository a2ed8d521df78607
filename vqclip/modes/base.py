"""What a mode gets from the pipeline and gives back: the run's context (job, models, where its events, frames and
saved states go) and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol

import torch
from torch import Tensor

from ..nets.load import Models
from ..optim.loop import AfterStep, Callback
from ..optim.objective import Objective
from ..optim.schedules import learning_rate
from ..optim.state import RunState
from ..optim.steer import Steering


class FrameSink(Protocol):
    """Where a run's frames go (the pipeline's run folder writer, or nothing in memory)."""

    def write(self, index: int, image: Tensor) -> Optional[Path]:
        """Keep the image [1,3,H,W] in [0,1] of step (or input frame) `index`."""

    def existing(self) -> list[Path]:
        """The frames already there (a resumed restyle goes on after them)."""


@dataclass
class RunContext:
    """Everything a mode needs to run a job: the resolved job (`GenerateConfig`, seed drawn), its models and device,
    the callbacks of the run's own steps, those that also see best-of-n's trial steps, the frame sink, hooks after
    each step (the state saver), a saved state to continue (`RunState.state_dict()`), if any, and a memo of best-of-n's
trials that the `candidates.keep` images of one batch share (the trials run once, each image goes on from its rank)."""

    cfg: object
    models: Models
    device: torch.device
    seed: int
    callbacks: list[Callback] = field(default_factory=list)
    trial_callbacks: list[Callback] = field(default_factory=list)
    frames: Optional[FrameSink] = None
    after: list[AfterStep] = field(default_factory=list)
    saved: Optional[dict] = None
    trials: Optional[dict] = None  # shared by the images of one batch of starts (candidates.keep): its trials, run once
    steering: Optional[Steering] = None  # a live run's steering wheel (`vqclip.optim.steer`), if any

    def lr_at(self, step: int, steps: Optional[int] = None) -> float:
        """The learning rate of a step under the job's schedule (over `steps`, default the job's)."""
        opt = self.cfg.optimizer
        return learning_rate(opt.schedule, opt.lr, opt.min_factor, step, self.cfg.steps if steps is None else steps)


@dataclass
class GenerateResult:
    """The outcome of a run: final image [1,3,H,W] in [0,1], its latent, the seed and the loss curve of the steps run
    (best-of-n's trial steps included, as the mean over the starts); `start` is the best-of-n start that went on (or,
    stopped during the trials, the one ranked to), `frames` the frame files written, `info` what the mode adds to the
    PNG's record."""

    image: Tensor
    z: Tensor
    seed: int
    steps: int
    losses: list[float] = field(default_factory=list)
    stopped: bool = False
    start: int = 0
    frames: list[Path] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    state: Optional[object] = field(default=None, repr=False)  # the RunState at the end
    saved: Optional[dict] = field(default=None, repr=False)  # its state_dict, taken in the run's RNG context


def start_run(cfg, models: Models, device: torch.device, seed: int, story=None,
              starts: int = 1) -> tuple[Objective, RunState]:
    """The objective of a job (a story's targets and weights when `story` is given) and the state its `starts`
    start from, drawn by the job's drawer from a generator seeded with `seed`."""
    objective = Objective(cfg, models, device, story.prompts if story else None, story.weights if story else None,
                          batch=starts)
    return objective, RunState.initial(cfg, objective.drawer, device, seed, starts)


class Mode:
    """A kind of run: how many steps it has, which frames it keeps, and how it drives the one loop."""

    name = "still"
    video_name = "progress"  # the run folder's video: progress.mp4 (restyle: restyled.mp4)
    saves_state = True  # state.pt every state_every steps (a restyle resumes by its frames instead)
    final_frame = True  # the final image is also the last frame
    steerable = False  # takes steers (`vqclip.optim.steer`) at the start of its steps

    def frame_every(self, cfg) -> int:
        """Steps between saved frames (0: none)."""
        return cfg.output.save_every

    def total(self, cfg) -> int:
        """The updates of the whole run, for progress."""
        return cfg.steps

    def steps_done(self, cfg, frames: list[Path]) -> int:
        """The updates a folder's frames stand for, where the mode resumes by its frames (a restyle)."""
        return 0

    def fps(self, cfg, frames: int) -> float:
        """The video's frame rate: frames / output.video_length when that is set, else output.fps."""
        if cfg.output.video_length:
            return max(frames / cfg.output.video_length, 1e-3)
        return float(cfg.output.fps)

    def audio(self, cfg) -> Optional[Path]:
        """A video whose audio track the output video carries (a restyle's input), or None."""
        return None

    def prepare(self, cfg, models: Models):
        """The job as this mode runs it, once the models are known (a restyle takes the video's aspect)."""
        return cfg

    def run(self, ctx: RunContext) -> GenerateResult:
        raise NotImplementedError
