"""Story prompts as the objective's targets: the union of the keyframes' texts, and a weight schedule over steps
(or, in a restyle, over input frames) from vqclip.optim.schedules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..optim.losses import weights_tensor
from ..optim.objective import WeightSchedule
from ..optim.prompts import Prompt, parse_job_prompts
from ..optim.schedules import PromptSchedule, story_keyframes


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
