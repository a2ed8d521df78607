"""Animated runs: story prompts over steps, zoom/rotate/pan videos, and the run loop that saves state for resume.

`run_generation` is the runner `jobs.run_job` uses: the plain loop of `generator.generate`, plus the job's story
(a weight schedule over the prompts), the zoom transform every `animation.every` steps, and `state.pt` saving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .candidates import first_generation
from .config import AnimationConfig, GenerateConfig
from .generator import Callback, GenerateResult, Generation, Models, StepEvent, resolve_seed, seeded
from .schedules import PromptSchedule, parse_keyframed, story_keyframes, value_at


# ---- the transform: pure math on images ----

def affine_theta(width: int, height: int, zoom: float = 1.0, angle: float = 0.0, shift_x: float = 0.0,
                 shift_y: float = 0.0) -> Tensor:
    """The `affine_grid` matrix [1,2,3] (output -> input, normalised coords) of: scale by `zoom` about the centre,
    rotate `angle` degrees counter-clockwise, then move by (shift_x, shift_y) pixels (right, down)."""
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    d = torch.tensor([width / 2, height / 2], dtype=torch.float64)  # normalised -> pixels from the centre
    rot_t = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)  # inverse of R = [[c, s], [-s, c]] (y down)
    m = torch.diag(1 / d) @ rot_t @ torch.diag(d) / zoom
    b = -(torch.diag(1 / d) @ rot_t @ torch.tensor([shift_x, shift_y], dtype=torch.float64)) / zoom
    return torch.cat([m, b[:, None]], 1)[None].float()


def transform_image(image: Tensor, zoom: float = 1.0, angle: float = 0.0, shift_x: float = 0.0, shift_y: float = 0.0,
                    padding: str = "reflection") -> Tensor:
    """Zoom, rotate and shift an image [B,3,H,W] in [0,1] (see `affine_theta`); uncovered borders are padded."""
    _, _, h, w = image.shape
    theta = affine_theta(w, h, zoom, angle, shift_x, shift_y).to(image.device, image.dtype).expand(image.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding, align_corners=False).clamp(0, 1)


@dataclass(frozen=True)
class Motion:
    """The per-frame camera motion of a zoom video: each of zoom, rotate, shift_x, shift_y key-framed over steps."""

    zoom: list[tuple[float, float]]
    rotate: list[tuple[float, float]]
    shift_x: list[tuple[float, float]]
    shift_y: list[tuple[float, float]]
    padding: str = "reflection"

    @classmethod
    def from_config(cls, a: AnimationConfig) -> "Motion":
        return cls(*(parse_keyframed(getattr(a, k), f"animation.{k}") for k in ("zoom", "rotate", "shift_x", "shift_y")),
                   padding=a.padding)

    def at(self, step: float) -> tuple[float, float, float, float]:
        """(zoom, degrees, shift_x, shift_y) of the transform at a step."""
        return tuple(value_at(track, step) for track in (self.zoom, self.rotate, self.shift_x, self.shift_y))

    def apply(self, image: Tensor, step: float) -> Tensor:
        """The image [1,3,H,W] in [0,1] moved by the transform at `step`."""
        return transform_image(image, *self.at(step), padding=self.padding)


class ZoomCallback:
    """Every `every` steps: decode the latent, move the image (`Motion`), re-encode it, and go on from there.

    Runs after the update of step s (s % every == 0), so each video frame (saved at the same steps) is
    `every` updates on from the moved previous frame. The moved latent also becomes the init target, so
    `init.weight` keeps frames close to their predecessor.
    """

    def __init__(self, motion: Motion, every: int, reset_optimizer: bool = True):
        self.motion, self.every, self.reset = motion, every, reset_optimizer
        self.transforms = 0

    @torch.no_grad()
    def __call__(self, event: StepEvent) -> None:
        if event.step % self.every or event.trial:
            return None
        gen = event.generation
        moved = self.motion.apply(gen.decode().float(), event.step)
        z = gen.models.vqgan.encode(moved).to(gen.z.dtype)
        gen.set_latent(z, reset_optimizer=self.reset)
        gen.z_init.copy_(z)
        self.transforms += 1
        return None


# ---- how a job's settings shape frames and videos ----

def frame_every(cfg: GenerateConfig) -> int:
    """Steps between saved frames: one per transform in zoom mode, else output.save_every."""
    return cfg.animation.every if cfg.animation.mode == "zoom" else cfg.output.save_every


def video_fps(cfg: GenerateConfig, n_frames: int) -> float:
    """The video's frame rate: frames / output.video_length when that is set, else output.fps."""
    if cfg.output.video_length:
        return max(n_frames / cfg.output.video_length, 1e-3)
    return float(cfg.output.fps)


# ---- stories ----

def make_generation(cfg: GenerateConfig, models: Models, device: torch.device, seed: int,
                    clock: Optional[Callable[[int], float]] = None, story_length: Optional[int] = None,
                    starts: int = 1) -> Generation:
    """A Generation for the job, with its story (if any) as the weight schedule; `clock` maps a step to the
    story's time axis (default: the step itself; restyle uses the frame index) and `story_length` is the length
    of that axis ('a ^ b' parts are spread over it; default cfg.steps)."""
    length = cfg.steps if story_length is None else story_length
    keyframes = story_keyframes(cfg.prompt, cfg.story, length, cfg.change_every)
    if not keyframes:
        return Generation(cfg, models, device, seed, starts)
    schedule = PromptSchedule(keyframes, cfg.story_mode)
    constant = "" if "^" in cfg.prompt else cfg.prompt.strip()  # a prompt beside a story: list holds throughout
    union = "|".join(f"{p.text}:1" for p in schedule.prompts)  # parses back to exactly these texts
    gen = Generation(replace(cfg, prompt=union + (f"|{constant}" if constant else "")), models, device, seed, starts)
    n = len(schedule.prompts)
    if [p.text for p in gen.prompts[:n]] != [p.text for p in schedule.prompts]:
        raise RuntimeError("story prompts did not parse back to themselves")  # an invariant, not user input
    fixed = gen.weights[n:]
    clock = clock or (lambda step: step)

    def weights(step: int) -> Tensor:
        story = torch.tensor(schedule.weights_at(clock(step)), dtype=torch.float32, device=device)
        return torch.cat([story, fixed])

    gen.weight_schedule = weights
    gen.story = schedule  # for callers that want the active prompts (logs, tests)
    return gen


# ---- the runner ----

def run_generation(cfg: GenerateConfig, models: Models, callbacks: Iterable[Callback] = (),
                   device: Optional[torch.device] = None, state: Optional[dict] = None) -> GenerateResult:
    """Run a job (story, zoom, state.pt in cfg.output.dir) with the global RNG forked and seeded; `state`
    (from `resume.load_state`) continues an earlier run of the same job bit-exactly."""
    from .generator import pick_device
    from .resume import StateSaver, state_path

    device = device or pick_device(cfg.device)
    seed = resolve_seed(cfg.seed)
    callbacks = list(callbacks)  # the trials of best-of-n see them too
    with seeded(device, seed):
        if state is None:
            gen = first_generation(cfg, models, device, seed, make_generation, callbacks)
        else:
            gen = make_generation(cfg, models, device, seed)
            gen.load_state_dict(state)
        own: list[Callback] = []
        if cfg.animation.mode == "zoom":
            own.append(ZoomCallback(Motion.from_config(cfg.animation), cfg.animation.every,
                                    cfg.animation.reset_optimizer))
        saver = StateSaver(state_path(Path(cfg.output.dir)), cfg.state_every) if cfg.output.dir else None
        if saver is not None:
            own.append(saver)
        result = gen.run([*callbacks, *own])
        if saver is not None and not gen.stopped_in_trials:  # a pick cut short is no state to resume: start over
            saver.save(gen)
    return result
