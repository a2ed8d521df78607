"""Zoom, rotate and pan videos: every `animation.every` steps the image is decoded, moved, re-encoded into the
latent and optimised on; each move is one video frame.

The move runs after the update of step s (s % every == 0), so each video frame (saved at the same steps) is `every`
updates on from the moved previous frame. The moved latent also becomes the init target, so `init.weight` keeps
frames close to their predecessor. With `animation.padding: outpaint` the border a move uncovers starts as an
outpaint's new area does (`start_image` with the job's init.mask_init: keep gives noise), drawn from the run's
generator, so a resume repeats it. A move with a 3D camera value sees the image from the moved camera over its
estimated depth (zoom3d.py) in the same resample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nets.device import pick_device
from ..optim.loop import StepEvent
from ..optim.masks import start_image
from ..optim.objective import Objective
from ..optim.schedules import parse_keyframed, value_at
from ..optim.state import RunState
from .rules import wants_camera
from .still import Still
from .zoom3d import Camera, DepthFn, load_depth_model, move_3d

OUTPAINT = "outpaint"  # the padding that fills an uncovered border as an outpaint's new area
EDGE = 1e-3  # a sample point this far (pixels) past the outer pixel centres still counts as covered (float slack)


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


def uncovered(width: int, height: int, zoom: float = 1.0, angle: float = 0.0, shift_x: float = 0.0,
              shift_y: float = 0.0) -> Tensor:
    """Where a move (`affine_theta`) uncovers the image, [1,1,H,W]: 1 where the point a pixel samples lies past the
    image's outer pixel centres (its bilinear sample reads the padding), else 0."""
    theta = affine_theta(width, height, zoom, angle, shift_x, shift_y)
    grid = F.affine_grid(theta, [1, 1, height, width], align_corners=False)
    x, y = ((grid[..., 0] + 1) * width - 1) / 2, ((grid[..., 1] + 1) * height - 1) / 2  # in pixel indices
    out = (x < -EDGE) | (x > width - 1 + EDGE) | (y < -EDGE) | (y > height - 1 + EDGE)
    return out[:, None].float()


def outpaint_move(image: Tensor, move: tuple[float, float, float, float], mask_init: str,
                  generator: torch.Generator) -> Tensor:
    """An image [B,3,H,W] in [0,1] moved by (zoom, degrees, shift_x, shift_y) with reflection padding, and the
    border the move uncovers replaced by what `start_image` gives an outpaint's new area under `mask_init`; a move
    that uncovers nothing is the plain move and draws no noise. (The start is made on the CPU, as the generator.)"""
    moved = transform_image(image, *move)
    new = uncovered(image.shape[-1], image.shape[-2], *move)
    if not bool(new.any()):
        return moved
    return start_image(moved.cpu(), new, new, mask_init, generator).to(image.device)


@dataclass(frozen=True)
class Motion:
    """The per-frame camera motion of a zoom video: each of zoom, rotate, shift_x, shift_y key-framed over steps, and
    the 3D camera when the job sets a 3D value (`Camera`)."""

    zoom: list[tuple[float, float]]
    rotate: list[tuple[float, float]]
    shift_x: list[tuple[float, float]]
    shift_y: list[tuple[float, float]]
    padding: str = "reflection"
    camera: Optional[Camera] = None

    @classmethod
    def from_config(cls, a) -> "Motion":
        """The motion of a job's `animation:` section."""
        return cls(*(parse_keyframed(getattr(a, k), f"animation.{k}") for k in ("zoom", "rotate", "shift_x", "shift_y")),
                   padding=a.padding, camera=Camera.from_config(a))

    def at(self, step: float) -> tuple[float, float, float, float]:
        """(zoom, degrees, shift_x, shift_y) of the transform at a step."""
        return tuple(value_at(track, step) for track in (self.zoom, self.rotate, self.shift_x, self.shift_y))

    def moves_3d(self, step: float) -> bool:
        """Whether the move at `step` moves the 3D camera (then it needs the image's depth)."""
        return self.camera is not None and any(v != 0 for v in self.camera.at(step))

    def apply(self, image: Tensor, step: float, generator: Optional[torch.Generator] = None,
              mask_init: str = "keep", depth: Optional[DepthFn] = None) -> Tensor:
        """The image [1,3,H,W] in [0,1] moved by the transform at `step`; with outpaint padding its uncovered border
        starts as `outpaint_move` says, its noise drawn from `generator`. A 3D move uses `depth` (`move_3d`)."""
        if self.moves_3d(step):
            _, _, h, w = image.shape
            outpaint = self.padding == OUTPAINT
            return move_3d(image, affine_theta(w, h, *self.at(step)), self.camera, step, depth,
                           "reflection" if outpaint else self.padding, outpaint, mask_init, generator)
        if self.padding == OUTPAINT:
            return outpaint_move(image, self.at(step), mask_init, generator)
        return transform_image(image, *self.at(step), padding=self.padding)


class ZoomMoves:
    """The after-step hook of a zoom run: every `every` steps, decode the latent, move the image (`Motion`),
    re-encode it, and go on from there (`RunState.move_to`); an outpainted border starts as `mask_init` says, its
    noise drawn from the run's generator (`state.rng`)."""

    def __init__(self, motion: Motion, every: int, objective: Objective, reset_optimizer: bool = True,
                 mask_init: str = "keep", depth: Optional[DepthFn] = None):
        self.motion, self.every, self.objective, self.reset = motion, every, objective, reset_optimizer
        self.mask_init, self.depth = mask_init, depth
        self.moves = 0

    @torch.no_grad()
    def __call__(self, state: RunState, event: StepEvent) -> None:
        if event.step % self.every or event.trial:
            return None
        moved = self.motion.apply(self.objective.decode(state.z).float(), event.step, state.rng, self.mask_init,
                                  self.depth)
        state.move_to(self.objective.drawer.encode(moved).to(state.z.dtype), self.reset)
        self.moves += 1
        return None


class Zoom(Still):
    """A still run whose latent is moved every `animation.every` steps; one frame per move."""

    name = "zoom"
    depth: Optional[DepthFn] = None  # the job's depth model, loaded by `prepare` when a 3D value is set

    def prepare(self, cfg, models):
        """Load the depth model once when the job moves the 3D camera (before its run folder is made, so a model
        that is not on disk fails first)."""
        if wants_camera(cfg.animation) and self.depth is None:
            self.depth = load_depth_model(cfg.animation.depth, self.device_of(cfg))
        return cfg

    @staticmethod
    def device_of(cfg) -> torch.device:
        """The device the job runs on (as `run_job` picks it)."""
        return pick_device(cfg.devices[0] if cfg.devices else cfg.device)

    def frame_every(self, cfg) -> int:
        return cfg.animation.every

    def hooks(self, cfg, objective: Objective) -> list:
        a = cfg.animation
        motion = Motion.from_config(a)
        if motion.camera is not None:
            self.prepare(cfg, None)  # a run not prepared by the pipeline loads its depth model here
        return [ZoomMoves(motion, a.every, objective, a.reset_optimizer, cfg.init.mask_init, self.depth)]
