"""Story prompts as the objective's targets: the union of the keyframes' texts, and a weight schedule over steps
(or, in a restyle, over input frames) from vqclip.optim.schedules; and the fade at each keyframe (`story_fade`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..optim.inits import prompt_background
from ..optim.loop import StepEvent
from ..optim.losses import weights_tensor
from ..optim.objective import Objective, WeightSchedule
from ..optim.prompts import Prompt, parse_job_prompts, parse_prompts
from ..optim.schedules import Keyframe, PromptSchedule, story_keyframes
from ..optim.state import RunState


@dataclass
class StoryTargets:
    """A story's prompts (the keyframes' texts with their stops first, weight 1 each, then the job's constant
    prompts), the weights [M] of each step, and the schedule behind them."""

    prompts: list[Prompt]
    weights: WeightSchedule
    schedule: PromptSchedule


def story_targets(cfg, device: torch.device, length: Optional[int] = None,
                  clock: Optional[Callable[[int], float]] = None) -> Optional[StoryTargets]:
    """The job's story (its `story:` list or 'a ^ b' prompt), or None for a plain prompt. `length` is the story's time
    axis ('a ^ b' parts are spread over it; default steps) and `clock` maps a step to it (default: the step itself;
    restyle uses the input frame)."""
    keyframes = story_keyframes(cfg.prompt, cfg.story, cfg.steps if length is None else length, cfg.change_every)
    if not keyframes:
        return None
    schedule = PromptSchedule(keyframes, cfg.story_mode)
    constant = "" if "^" in cfg.prompt else cfg.prompt.strip()  # a prompt beside a story: list holds throughout
    n = len(schedule.prompts)
    prompts = list(schedule.prompts) + parse_job_prompts(constant, cfg.negative, cfg.image_prompts)
    fixed = weights_tensor(prompts, device)[n:]
    clock = clock or (lambda step: step)

    def weights(step: int) -> torch.Tensor:
        story = torch.tensor(schedule.weights_at(clock(step)), dtype=torch.float32, device=device)
        return torch.cat([story, fixed])

    fixed_host = [float(p.weight) for p in prompts[n:]]
    weights.host = lambda step: [float(w) for w in schedule.weights_at(clock(step))] + fixed_host  # as numbers
    return StoryTargets(prompts, weights, schedule)


def fade_color(keyframe: Keyframe) -> Optional[list[float]]:
    """RGB in [0,1] of the background a keyframe's pulling texts name after 'on' (the first that names one), or None."""
    for p in parse_prompts(keyframe.prompt):
        rgb = prompt_background(p.text) if p.weight > 0 and not p.image else None
        if rgb is not None:
            return rgb
    return None


class StoryFade:
    """The after-step hook of a story with `story_fade` f > 0: when the step of a keyframe after the first is reached,
    each image [B,3,H,W] is moved the share f of the way to a flat canvas in the colour that keyframe names after 'on'
    (its own mean colour where it names none), re-encoded, and the run goes on from there with a fresh optimiser
    (`RunState.move_to`). A small model left to itself keeps the previous part's colours: a flat start of another
    colour is a basin its gradients do not leave (docs/animation.md)."""

    def __init__(self, schedule: PromptSchedule, fade: float, objective: Objective):
        self.keyframes = {k.at: k for k in schedule.keyframes[1:]}
        self.fade, self.objective = fade, objective

    @torch.no_grad()
    def __call__(self, state: RunState, event: StepEvent) -> None:
        keyframe = self.keyframes.get(state.step)
        if keyframe is None:
            return None
        image = self.objective.decode(state.z).float()
        rgb = fade_color(keyframe)
        flat = (torch.tensor(rgb, device=image.device).view(1, 3, 1, 1) if rgb is not None
                else image.mean((2, 3), keepdim=True))
        faded = (1 - self.fade) * image + self.fade * flat
        state.move_to(self.objective.drawer.encode(faded).to(state.z.dtype))
        return None
