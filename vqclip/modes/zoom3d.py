"""The 3D camera of a zoom video: a move with a 3D value (translation_z, rotation_3d_x/y/z) estimates the depth of
the current image (one forward pass of the job's depth model, outside any autograd), sees it from the moved camera
(vqclip.optim.camera) and fills what the move uncovers as the 2D zoom does; the 2D zoom, rotate and shift of the
same move are applied in the same resample. The depth model loads once per run, and only when a 3D value is set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..optim.camera import camera_warp, depth_from_disparity, intrinsics, rotation
from ..optim.masks import start_image
from ..optim.schedules import parse_keyframed, value_at
from .rules import CAMERA_TRACKS, wants_camera

DepthFn = Callable[[Tensor, int], Tensor]  # image [B,3,H,W] in [0,1], input side -> disparity [B,1,H,W]


def load_depth_model(name: str, device) -> DepthFn:
    """The job's depth model (`vqclip.nets.depth`, imported here: its code and weights load only in 3D mode)."""
    from ..nets.depth import load_depth  # only a 3D zoom reads the depth model's code

    return load_depth(name, device)


@dataclass(frozen=True)
class Camera:
    """The 3D camera of a zoom video: translation_z and rotation_3d_x/y/z key-framed over steps, its field of view,
    the depth range the depth model's disparity is scaled into, and the depth model's input side."""

    tracks: tuple[list[tuple[float, float]], ...]  # translation_z, rotation_3d_x, rotation_3d_y, rotation_3d_z
    fov: float = 40.0
    near: float = 200.0
    far: float = 10000.0
    depth_size: int = 518

    @classmethod
    def from_config(cls, a) -> Optional["Camera"]:
        """The camera of a job's `animation:` section, or None when no 3D value is set at any step."""
        if not wants_camera(a):
            return None
        return cls(tuple(parse_keyframed(getattr(a, k), f"animation.{k}") for k in CAMERA_TRACKS), a.fov, a.near,
                   a.far, a.depth_size)

    def at(self, step: float) -> tuple[float, float, float, float]:
        """(translation_z, degrees x, y, z) of the move at a step."""
        return tuple(value_at(track, step) for track in self.tracks)


def points_2d(theta: Tensor, width: int, height: int) -> Tensor:
    """The pixels [1,H,W,2] a 2D move (`affine_theta` [1,2,3], output -> input) samples, in pixel coordinates."""
    grid = F.affine_grid(theta, [1, 1, height, width], align_corners=False)
    return ((grid + 1) * torch.tensor([width, height], dtype=grid.dtype) - 1) / 2


def move_3d(image: Tensor, theta: Tensor, camera: Camera, step: float, depth: DepthFn, padding: str,
            outpaint: bool = False, mask_init: str = "keep",
            generator: Optional[torch.Generator] = None) -> Tensor:
    """The image [1,3,H,W] in [0,1] seen from the camera moved as at `step`, then moved in 2D by `theta`, in one
    resample; the uncovered border is `padding`'s, or with `outpaint` starts as `start_image` gives an outpaint's new
    area under `mask_init` (noise from `generator`; a move that uncovers nothing draws none)."""
    _, _, h, w = image.shape
    forward, *degrees = camera.at(step)
    with torch.no_grad():  # the depth never joins the latent's autograd
        disparity = depth(image, camera.depth_size)
    z = depth_from_disparity(disparity.detach().float(), camera.near, camera.far)
    points = points_2d(theta, w, h).to(image.device)
    moved, new = camera_warp(image, z, intrinsics(camera.fov, w, h), rotation(*degrees), forward, points, padding)
    if not outpaint or not bool(new.any()):
        return moved
    return start_image(moved.cpu(), new.cpu(), new.cpu(), mask_init, generator).to(image.device)
