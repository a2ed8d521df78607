"""Flow warping and the forward-backward occlusion check, against integer shifts (torch.roll), a hand-made bilinear
sample, and a scene whose occluded pixels are known."""

from __future__ import annotations

import pytest
import torch

from vqclip.optim.flowwarp import flow_grid, occlusion, outside, warp


def constant_flow(dx: float, dy: float, h: int = 12, w: int = 16) -> torch.Tensor:
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


@pytest.mark.parametrize("dx,dy", [(3, 0), (0, 2), (-2, 1), (1, -3)])
def test_integer_shift_equals_roll_inside(dx, dy):
    image = torch.rand(2, 3, 12, 16)
    out = warp(image, constant_flow(dx, dy).expand(2, 2, 12, 16))
    expected = torch.roll(image, shifts=(-dy, -dx), dims=(2, 3))  # out(p) = image(p + d)
    ys = slice(max(0, -dy), 12 - max(0, dy))
    xs = slice(max(0, -dx), 16 - max(0, dx))
    assert torch.allclose(out[..., ys, xs], expected[..., ys, xs], atol=1e-6)


def test_fractional_flow_is_the_bilinear_mix():
    image = torch.rand(1, 1, 6, 7)
    flow = torch.zeros(1, 2, 6, 7)
    flow[0, 0, 2, 3], flow[0, 1, 2, 3] = 0.25, 0.5  # pixel (x=3, y=2) reads (3.25, 2.5)
    out = warp(image, flow)
    i = image[0, 0]
    want = (0.75 * 0.5 * i[2, 3] + 0.25 * 0.5 * i[2, 4] + 0.75 * 0.5 * i[3, 3] + 0.25 * 0.5 * i[3, 4])
    assert out[0, 0, 2, 3].item() == pytest.approx(want.item(), abs=1e-6)
    assert out[0, 0, 0, 0].item() == pytest.approx(i[0, 0].item(), abs=1e-6)  # zero flow: the pixel itself


def test_zero_flow_is_the_identity_grid():
    grid = flow_grid(torch.zeros(1, 2, 4, 5))
    ref = torch.nn.functional.affine_grid(torch.eye(2, 3)[None], [1, 1, 4, 5], align_corners=False)
    assert torch.allclose(grid, ref, atol=1e-6)


def test_padding_modes_differ_outside():
    image = torch.rand(1, 3, 8, 8) + 1
    out = warp(image, constant_flow(3, 0, 8, 8), padding="zeros")
    assert (out[..., -2:] == 0).all() and (out[..., :4] > 0).all()
    border = warp(image, constant_flow(3, 0, 8, 8))
    assert torch.allclose(border[..., -1], image[..., -1])


def test_outside_marks_exactly_the_columns_that_leave():
    mask = outside(constant_flow(2, 0, 5, 9))
    assert mask[0, 0, :, :7].sum() == 0 and (mask[0, 0, :, 7:] == 1).all()
    mask = outside(constant_flow(0, -1, 5, 9))
    assert (mask[0, 0, 0] == 1).all() and mask[0, 0, 1:].sum() == 0


def test_consistent_flows_are_not_occluded():
    flow, back = constant_flow(2, 1), constant_flow(-2, -1)
    occ = occlusion(flow, back)
    assert torch.equal(occ, outside(flow))  # only where the point leaves the image
    assert occ[0, 0, :11, :14].sum() == 0


def test_a_covered_background_is_occluded():
    """A square moves right by 4 over a still background: in frame a, the background just right of the square is
    covered in b; flow a->b says 0 there, but back b->a at that place says -4 (the square): occluded."""
    h, w = 16, 20
    flow = torch.zeros(1, 2, h, w)
    flow[0, 0, 4:10, 4:10] = 4  # the square at x 4..9 in a is at 8..13 in b
    back = torch.zeros(1, 2, h, w)
    back[0, 0, 4:10, 8:14] = -4
    occ = occlusion(flow, back)[0, 0]
    assert occ[4:10, 10:14].eq(1).all()  # background covered by the square in b
    assert occ[4:10, 4:10].eq(0).all()  # the square itself is followed both ways
    assert occ[:4].eq(0).all() and occ[10:].eq(0).all() and occ[4:10, 14:].eq(0).all()


def test_the_check_scales_with_the_motion():
    """A flow error of 1 px is within tolerance for a fast motion (alpha term), not for a still one (beta only)."""
    fast, fast_back = constant_flow(10, 0, 8, 40), constant_flow(-9, 0, 8, 40)
    assert occlusion(fast, fast_back)[0, 0, :, :25].sum() == 0  # 1 <= 0.01 * (100 + 81) + 0.5
    still, still_back = torch.zeros(1, 2, 8, 40), constant_flow(-1, 0, 8, 40)
    assert occlusion(still, still_back)[0, 0].eq(1).all()  # 1 > 0.5
    assert occlusion(still, still_back, beta=1.01)[0, 0].eq(0).all()  # past the boundary the other way
