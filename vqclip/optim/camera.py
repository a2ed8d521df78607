"""The 3D camera of zoom videos, as pure math: depth from a depth model's disparity, a pinhole camera from the field
of view, the pose of one move, and the warp that sees the current image from the moved camera (kornia's
unprojection and projection), with the border the move uncovers.

Camera frame as kornia's (OpenCV's): x right, y down, z forward; pixel (i, j) is the centre of column i, row j, so
the principal point is ((W-1)/2, (H-1)/2), where `transform_image` zooms about. A move takes the camera `forward`
units along its view and turns it by R (`rotation`): a point X_new in the new camera's frame is R X_new + (0, 0,
forward) in the old one.
"""

from __future__ import annotations

import math

import torch
from kornia.geometry.camera import project_points, unproject_points
from kornia.geometry.conversions import axis_angle_to_rotation_matrix
from torch import Tensor

from .flowwarp import pixel_grid, sample  # one sampler of images at pixel coordinates, the flow warp's too

EDGE = 1e-3  # a sample this far (pixels) past the outer pixel centres still counts as covered, as zoom.py's
FLAT = 1e-6  # a disparity map whose range is below this share of its largest value is flat (one plane, at `near`)


def depth_from_disparity(disparity: Tensor, near: float, far: float) -> Tensor:
    """Depth [B,1,H,W] in [near, far] from a relative disparity [B,1,H,W] (larger = nearer, any scale and shift):
    each image's disparity is scaled to [0, 1] and 1/depth runs linearly from 1/far (0) to 1/near (1), as a
    disparity does; a flat map puts the whole image at `near`."""
    lo = disparity.amin((1, 2, 3), keepdim=True)
    hi = disparity.amax((1, 2, 3), keepdim=True)
    span = hi - lo
    flat = span <= FLAT * hi.abs() + 1e-12
    t = torch.where(flat, torch.ones_like(disparity), (disparity - lo) / torch.where(flat, torch.ones_like(span), span))
    return 1 / (t / near + (1 - t) / far)


def intrinsics(fov: float, width: int, height: int) -> Tensor:
    """The camera matrix K [1,3,3] of square pixels whose `fov` degrees span the image's shorter side, principal
    point at the centre ((W-1)/2, (H-1)/2)."""
    f = min(width, height) / 2 / math.tan(math.radians(fov) / 2)
    return torch.tensor([[[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]]])


def rotation(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Tensor:
    """R [1,3,3] (new camera frame -> old) of a turn by degrees: R_x R_y R_z, each right-handed about the camera's
    axis. Positive x tilts the camera up (the picture slides down), positive y turns it right (the picture slides
    left), positive z rolls it so that the picture turns counter-clockwise, as `rotate` does."""
    r = torch.eye(3)[None]
    for i, deg in enumerate((x, y, z)):
        axis = torch.zeros(1, 3)
        axis[0, i] = math.radians(deg)
        r = r @ axis_angle_to_rotation_matrix(axis)
    return r


def source_points(depth: Tensor, camera: Tensor, rot: Tensor, forward: float, points: Tensor,
                  iterations: int = 2) -> tuple[Tensor, Tensor]:
    """Where the scene point each new-view pixel sees lies in the old view: (pixels [B,H,W,2], its depth in the old
    camera [B,H,W]), from the old view's depth [B,1,H,W]. The new view's depth starts as the old one's at the same
    pixel and is refined `iterations` times (the depth, seen from the new camera, of the point it lands on); a plane
    facing the camera is exact after one. `points`: the new view's pixels (default grid, or one moved in 2D)."""
    k = camera.to(depth)[:, None, None]  # [B,1,1,3,3] against points [B,H,W,...]
    r = rot.to(depth)[:, None, None]
    move = torch.tensor([0.0, 0.0, forward], dtype=depth.dtype, device=depth.device)
    z = sample(depth, points)[:, 0, ..., None]  # [B,H,W,1]
    ahead = torch.ones_like(z, dtype=torch.bool)  # the point lies ahead of the new camera
    for i in range(iterations + 1):
        old = (r @ unproject_points(points, z, k)[..., None])[..., 0] + move  # in the old camera's frame
        src = project_points(torch.cat([old[..., :2], old[..., 2:].clamp_min(1e-6)], -1), k)
        if i == iterations:  # a point behind either camera is off the old image
            return torch.where(ahead & (old[..., 2:] > 0), src, torch.full_like(src, -1e6)), old[..., 2]
        seen = unproject_points(src, sample(depth, src)[:, 0, ..., None], k) - move
        z = (r.transpose(-1, -2) @ seen[..., None])[..., 2, :]  # its depth in the new camera
        ahead, z = z > 0, z.clamp_min(1e-6)
    raise AssertionError("unreachable")


def outside(points: Tensor, width: int, height: int) -> Tensor:
    """1 where pixel coordinates [B,H,W,2] lie past the image's outer pixel centres (a bilinear sample there reads
    the padding), as [B,1,H,W]."""
    x, y = points[..., 0], points[..., 1]
    out = (x < -EDGE) | (x > width - 1 + EDGE) | (y < -EDGE) | (y > height - 1 + EDGE)
    return out[:, None].float()


def camera_warp(image: Tensor, depth: Tensor, camera: Tensor, rot: Tensor, forward: float,
                points: Tensor | None = None, padding: str = "reflection") -> tuple[Tensor, Tensor]:
    """The image [B,3,H,W] in [0,1] seen from the camera moved `forward` and turned by `rot` (`source_points`, from
    its depth [B,1,H,W]), and where the move uncovers it [B,1,H,W] (1: the sample lies off the old image, or behind
    the old or the new camera; the image there is `padding`'s). `points`: the new view's pixels [B,H,W,2], moved by
    a 2D zoom, turn or shift of the same move (one resample); default the pixel grid."""
    _, _, h, w = image.shape
    if points is None:
        points = pixel_grid(w, h).to(image).expand(image.shape[0], h, w, 2)
    src, _ = source_points(depth.to(image), camera, rot, forward, points.to(image))
    moved = sample(image, src, padding).clamp(0, 1)
    return moved, outside(src, w, h)
