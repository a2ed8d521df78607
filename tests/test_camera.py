"""The 3D camera's geometry (vqclip.optim.camera) against independent computations written here: a plane facing the
camera flown into is the 2D zoom of scale d/(d-t) and rolled is the 2D rotation; two planes at two depths each
scale about the principal point by their own d/(d-t); a pure turn is the homography K R K^-1 whatever the depth;
a move back uncovers exactly the border a 2D zoom-out does; disparity maps to depth as documented."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kornia.geometry.transform import warp_perspective

from vqclip.modes.zoom import transform_image, uncovered
from vqclip.modes.zoom3d import Camera, move_3d
from vqclip.optim.camera import camera_warp, depth_from_disparity, intrinsics, rotation
from vqclip.modes.zoom import affine_theta

W, H = 40, 32
C = ((W - 1) / 2, (H - 1) / 2)  # the principal point in pixel indices
BORDER = 3  # pixels next to the edge (and to a depth step) left out where padding or a blended depth decides


@pytest.fixture(scope="module")
def image():
    """A smooth random image [1,3,H,W] (bilinear upsampled noise, so interpolation differences stay small)."""
    g = torch.Generator().manual_seed(3)
    return F.interpolate(torch.rand(1, 3, 8, 10, generator=g), size=(H, W), mode="bilinear", align_corners=False)


def plane(d: float) -> torch.Tensor:
    return torch.full((1, 1, H, W), float(d))


def inner(x: torch.Tensor, margin: int = BORDER) -> torch.Tensor:
    return x[..., margin:-margin, margin:-margin]


def bilinear_at(image: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """torch's bilinear sample of an image at pixel-index coordinates [H,W] (align_corners=False convention)."""
    grid = torch.stack([(2 * xs + 1) / W - 1, (2 * ys + 1) / H - 1], -1)[None]
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def pixel_index():
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    return xs, ys


@pytest.mark.parametrize("d,t", [(200.0, 10.0), (50.0, 15.0), (300.0, -30.0)])
def test_flying_into_a_plane_facing_the_camera_is_the_2d_zoom_of_d_over_d_minus_t(image, d, t):
    """Measured: max |3D - 2D| 7e-7, mean 7e-8 away from the border (float rounding: both sample the same points)."""
    moved, _ = camera_warp(image, plane(d), intrinsics(40, W, H), rotation(), t)
    zoomed = transform_image(image, zoom=d / (d - t))
    diff = inner((moved - zoomed).abs())
    assert diff.max() < 1e-4 and diff.mean() < 1e-5


@pytest.mark.parametrize("deg", [7.0, -20.0])
def test_a_roll_over_a_plane_is_the_2d_rotation_of_the_same_angle_counter_clockwise(image, deg):
    moved, new = camera_warp(image, plane(120), intrinsics(60, W, H), rotation(z=deg), 0.0)
    turned = transform_image(image, angle=deg)
    assert inner((moved - turned).abs()).max() < 1e-4
    assert torch.equal(new, uncovered(W, H, angle=deg))


def test_two_planes_each_scale_about_the_principal_point_by_their_own_d_over_d_minus_t(image):
    """Left half at 100 (scale 100/80), right half at 400 (400/380): each new pixel samples c + (p - c)(d - t)/d of
    the plane it sees; the step between them sits on the principal point's column, which stays put."""
    d1, d2, t = 100.0, 400.0, 20.0
    depth = plane(d2)
    depth[..., : W // 2] = d1
    moved, new = camera_warp(image, depth, intrinsics(50, W, H), rotation(), t)
    xs, ys = pixel_index()
    d = torch.where(xs < C[0], d1, d2)
    factor = (d - t) / d
    expected = bilinear_at(image, C[0] + (xs - C[0]) * factor, C[1] + (ys - C[1]) * factor)
    away = ((xs - C[0]).abs() > BORDER)[None, None].expand_as(moved)
    assert (moved - expected).abs()[away].max() < 1e-4
    assert not new.any()  # flying in uncovers nothing at the edges
    # the near half really moved more than the far half would have: the two planes are not one zoom
    one_zoom = transform_image(image, zoom=d2 / (d2 - t))
    assert (moved - one_zoom).abs()[..., BORDER:-BORDER, BORDER:W // 2 - BORDER].max() > 1e-2


def turn(axis: str, deg: float) -> np.ndarray:
    """R (new camera -> old) built from its axes, as the documentation says the turn goes: its columns are the new
    camera's x, y, z axes in the old camera's frame (x right, y down, z forward)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    if axis == "x":  # tilt up: the new forward axis leans to -y (up)
        return np.array([[1, 0, 0], [0, c, s], [0, -s, c]]).T
    return np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]]).T  # turn right: forward leans to +x


@pytest.mark.parametrize("axis,deg", [("x", 6.0), ("y", 6.0), ("y", -9.0), ("both", 5.0)])
@pytest.mark.parametrize("depth", ["plane", "ramp"])
def test_a_pure_turn_is_the_homography_k_r_k_inverse_whatever_the_depth(image, axis, deg, depth):
    """kornia's warp_perspective by K R^T K^-1 (the old -> new pixel map) is the reference; the depth is irrelevant
    to a turn about the camera centre."""
    fov = 55.0
    r = turn("x", deg) @ turn("y", deg / 2) if axis == "both" else turn(axis, deg)
    f = min(W, H) / 2 / math.tan(math.radians(fov) / 2)
    k = np.array([[f, 0, C[0]], [0, f, C[1]], [0, 0, 1]])
    old_to_new = torch.tensor(k @ r.T @ np.linalg.inv(k), dtype=torch.float32)[None]
    expected = warp_perspective(image, old_to_new, (H, W), mode="bilinear", padding_mode="zeros", align_corners=True)
    z = plane(300.0) if depth == "plane" else 100 + 10 * torch.arange(W, dtype=torch.float32).expand(1, 1, H, W)
    angles = {"x": dict(x=deg), "y": dict(y=deg), "both": dict(x=deg, y=deg / 2)}[axis]
    moved, new = camera_warp(image, z, intrinsics(fov, W, H), rotation(**angles), 0.0, padding="zeros")
    covered = (new == 0).expand_as(moved)
    assert new.any() and covered.any()
    assert (moved - expected).abs()[covered].max() < 1e-4


def test_turning_right_slides_the_picture_left_and_tilting_up_slides_it_down():
    dot = torch.zeros(1, 3, H, W)
    dot[..., H // 2 - 1: H // 2 + 1, W // 2 - 1: W // 2 + 1] = 1
    k = intrinsics(40, W, H)

    def centre_of(img):
        m = img[0, 0]
        xs, ys = pixel_index()
        return float((m * xs).sum() / m.sum()), float((m * ys).sum() / m.sum())

    x0, y0 = centre_of(dot)
    right, _ = camera_warp(dot, plane(100), k, rotation(y=5), 0.0, padding="zeros")
    up, _ = camera_warp(dot, plane(100), k, rotation(x=5), 0.0, padding="zeros")
    assert centre_of(right)[0] < x0 - 2 and abs(centre_of(right)[1] - y0) < 0.5
    assert centre_of(up)[1] > y0 + 2 and abs(centre_of(up)[0] - x0) < 0.5


@pytest.mark.parametrize("t", [-10.0, -40.0])
def test_a_move_back_uncovers_exactly_the_border_a_2d_zoom_out_uncovers(image, t):
    d = 150.0
    _, new = camera_warp(image, plane(d), intrinsics(40, W, H), rotation(), t)
    assert new.sum() > 0 and torch.equal(new, uncovered(W, H, zoom=d / (d - t)))
    _, none = camera_warp(image, plane(d), intrinsics(40, W, H), rotation(), -t)
    assert not none.any()


def test_a_plane_flown_past_is_behind_the_camera_and_counts_as_uncovered(image):
    """Flying past a plane 50 away by 60: the plane is behind the new camera, so nothing of it is seen."""
    _, new = camera_warp(image, plane(50), intrinsics(40, W, H), rotation(), 60.0)
    assert new.all()


def test_disparity_maps_to_depth_in_near_far_with_inverse_depth_linear():
    near, far = 10.0, 1000.0
    disparity = torch.tensor([0.5, 1.5, 2.0, 3.5]).reshape(1, 1, 1, 4)  # scaled: 0, 1/3, 1/2, 1
    depth = depth_from_disparity(disparity, near, far)
    share = torch.tensor([0.0, 1 / 3, 0.5, 1.0])
    expected = 1 / (share / near + (1 - share) / far)
    torch.testing.assert_close(depth.flatten(), expected)
    assert depth[0, 0, 0, 0] == pytest.approx(far) and depth[0, 0, 0, -1] == pytest.approx(near)
    # a relative disparity: any positive scale and shift gives the same depth
    torch.testing.assert_close(depth_from_disparity(7 * disparity + 3, near, far), depth)
    # each image of a batch is scaled on its own; a flat one lies at `near`
    batch = torch.cat([disparity, torch.full_like(disparity, 0.3)])
    out = depth_from_disparity(batch, near, far)
    torch.testing.assert_close(out[0], depth[0])
    assert torch.allclose(out[1], torch.full_like(out[1], near))


def test_the_camera_matrix_spans_fov_over_the_shorter_side_with_square_pixels():
    k = intrinsics(90.0, W, H)[0]
    assert k[0, 0] == pytest.approx(H / 2) and k[1, 1] == pytest.approx(H / 2)  # tan(45) = 1: half the short side
    assert (k[0, 2], k[1, 2]) == pytest.approx(C)
    assert intrinsics(60.0, H, W)[0, 0, 0] == pytest.approx(H / 2 / math.tan(math.radians(30)))


def flat_depth(image, size):
    return torch.ones_like(image[:, :1])  # flat: the whole picture at `near`


@pytest.mark.parametrize("move2d", [dict(zoom=1.1), dict(zoom=0.9, angle=5.0, shift_x=3.0, shift_y=-2.0)])
def test_a_3d_move_and_the_2d_move_of_the_same_frame_compose_in_one_resample(image, move2d):
    """Over a flat picture (at near = 80) flown into by 8, then zoomed/turned/shifted in 2D: one 2D move of zoom
    zoom * 80/72 and the same angle and shift (the 3D zoom first, then the 2D move)."""
    camera = Camera(([(0, 8.0)], [(0, 0.0)], [(0, 0.0)], [(0, 0.0)]), fov=40, near=80, far=800, depth_size=14)
    moved = move_3d(image, affine_theta(W, H, **move2d), camera, 0, flat_depth, "zeros")
    both = transform_image(image, **{**move2d, "zoom": move2d["zoom"] * 80 / 72}, padding="zeros")
    assert inner((moved - both).abs()).max() < 1e-4


def test_the_depth_model_sees_the_image_at_the_jobs_depth_size_outside_autograd(image):
    seen = []

    def depth(img, size):
        seen.append((img.shape, size, torch.is_grad_enabled()))
        return flat_depth(img, size)

    camera = Camera(([(0, 1.0)], [(0, 0.0)], [(0, 0.0)], [(0, 0.0)]), depth_size=28)
    with torch.enable_grad():
        move_3d(image.clone().requires_grad_(), affine_theta(W, H), camera, 0, depth, "border")
    assert seen == [(image.shape, 28, False)]


def test_what_a_move_uncovers_is_the_paddings_and_the_rest_the_moves(image):
    """A move back over a plane, with each padding: the whole image, border included, is the 2D zoom-out's with that
    padding (torch's grid_sample padding is the reference for the border)."""
    d, t = 150.0, -25.0
    k = intrinsics(40, W, H)
    for padding in ("zeros", "reflection", "border"):
        moved, new = camera_warp(image, plane(d), k, rotation(), t, padding=padding)
        assert new.any()
        assert (moved - transform_image(image, zoom=d / (d - t), padding=padding)).abs().max() < 1e-4, padding


def test_outpaint_starts_the_uncovered_border_from_the_runs_noise_and_draws_none_when_nothing_is_uncovered(image):
    """init.mask_init keep: the uncovered pixels are uniform noise drawn from the given generator (torch.rand of the
    image's shape, as an outpaint's new area), the covered ones the plain (reflection) move; a fly-in draws nothing."""
    back = Camera(([(0, -20.0)], [(0, 0.0)], [(0, 0.0)], [(0, 0.0)]), near=100, far=1000, depth_size=14)
    plain = move_3d(image, affine_theta(W, H), back, 0, flat_depth, "reflection")
    _, new = camera_warp(image, plane(100), intrinsics(40, W, H), rotation(), -20.0)
    noise = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(5))
    filled = move_3d(image, affine_theta(W, H), back, 0, flat_depth, "reflection", outpaint=True, mask_init="keep",
                     generator=torch.Generator().manual_seed(5))
    assert new.any()
    torch.testing.assert_close(filled, torch.where(new > 0, noise, plain))
    into = Camera(([(0, 20.0)], [(0, 0.0)], [(0, 0.0)], [(0, 0.0)]), near=100, far=1000, depth_size=14)
    g = torch.Generator().manual_seed(5)
    before = g.get_state()
    out = move_3d(image, affine_theta(W, H), into, 0, flat_depth, "reflection", outpaint=True, generator=g)
    assert torch.equal(g.get_state(), before)
    assert torch.equal(out, move_3d(image, affine_theta(W, H), into, 0, flat_depth, "reflection"))
