"""Tiled upscaling at its stated edges: tiles cover the image with the last flush, two neighbours' blend weights sum
to 1, a network that sees exactly overlap/4 pixels gives the untiled result and one that sees one pixel more does
not; scales and the networks that are no RGB upscaler are refused in one line."""

from __future__ import annotations

import pytest
import torch

from tiny_upscaler import compact_state, save_upscaler
from vqclip.errors import VqclipError
from vqclip.nets.upscaler import _ramp, _starts, load_upscaler, upscale, upscale_tiled


@pytest.fixture(scope="module")
def compact(tmp_path_factory):
    """SRVGGNetCompact x4 with 4 body convs: it sees 6 input pixels around each output pixel (6 convs of 3x3)."""
    return load_upscaler(save_upscaler(tmp_path_factory.mktemp("up") / "c.pth", compact_state(num_conv=4)))


@pytest.mark.parametrize("size, tile, overlap", [(100, 48, 24), (48, 48, 24), (49, 48, 24), (200, 64, 16),
                                                 (97, 48, 0), (20, 48, 24)])
def test_tile_starts_cover_the_side_with_the_last_flush(size, tile, overlap):
    starts = _starts(size, tile, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert starts[-1] == max(0, size - tile)  # the last tile ends at the far edge
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # neighbours overlap by at least `overlap`
    assert len(starts) == (1 if size <= tile else -(-(size - tile) // (tile - overlap)) + 1)


@pytest.mark.parametrize("fade", [4, 12, 24])
def test_two_neighbours_blend_weights_sum_to_one_across_their_overlap(fade):
    length = 6 * fade
    left, right = _ramp(length, True, True, fade), _ramp(length, True, True, fade)
    overlap = 2 * fade  # the right tile starts 2*fade before the left one ends
    torch.testing.assert_close(left[-overlap:] + right[:overlap], torch.ones(overlap))
    assert torch.equal(left[: fade // 2], torch.zeros(fade // 2))  # nothing kept within fade/2 of a covered edge
    assert torch.equal(left[fade + fade // 2: length - fade - fade // 2], torch.ones(length - 3 * fade))
    assert torch.equal(_ramp(length, False, False, fade), torch.ones(length))  # the image's own edges keep all


def test_an_image_edge_is_kept_whole_and_a_covered_edge_fades():
    w = _ramp(40, before=False, after=True, fade=8)
    assert torch.equal(w[:20], torch.ones(20)) and w[-4:].sum() == 0 and 0 < w[-8] < 1


@pytest.mark.parametrize("overlap, exact", [(24, True), (48, True), (200, True), (20, False)])
def test_tiles_are_exact_when_the_network_sees_at_most_overlap_over_4(compact, overlap, exact):
    """overlap 24: kept pixels are >= 6 px from a covered edge, the 6 px the network sees: exact. 20: 5 px: not.
    An overlap above tile/2 is taken as tile/2."""
    x = torch.rand(1, 3, 60, 100, generator=torch.Generator().manual_seed(3))
    whole = upscale_tiled(compact, x, tile=0)
    diff = (upscale_tiled(compact, x, tile=48, overlap=overlap) - whole).abs().max()
    assert (diff < 1e-5) == exact, diff


def test_an_image_within_one_tile_is_one_pass(compact):
    calls = []

    def model(image):
        calls.append(tuple(image.shape))
        return compact(image)

    x = torch.rand(1, 3, 48, 30)
    assert torch.equal(upscale_tiled(model, x, tile=48), compact(x)) and calls == [(1, 3, 48, 30)]
    upscale_tiled(model, torch.rand(1, 3, 49, 30), tile=48)
    assert len(calls) == 1 + 2


def test_the_scale_asked_for(compact):
    x = torch.rand(1, 3, 12, 10)
    assert tuple(upscale(compact, x).shape) == (1, 3, 48, 40)
    assert torch.equal(upscale(compact, x, scale=4), upscale(compact, x))
    assert tuple(upscale(compact, x, scale=1).shape) == (1, 3, 12, 10)
    for scale in (0, 5):
        with pytest.raises(VqclipError, match=f"upscale scale {scale}: .* use a scale from 1 to 4"):
            upscale(compact, x, scale=scale)


def test_a_one_channel_network_is_not_an_rgb_upscaler(tmp_path):
    state = compact_state()
    state["body.0.weight"] = state["body.0.weight"][:, :1].contiguous()
    with pytest.raises(VqclipError, match="not an RGB upscaler .*1 -> "):
        load_upscaler(save_upscaler(tmp_path / "gray.pth", state))


@pytest.mark.parametrize("content, expected", [({"params_ema": {"body.0.weight": 3}}, "holds no state dict of tensors"),
                                               ({}, "holds no state dict of tensors"),
                                               ({"weights": torch.ones(2)}, "not an upscaler spandrel knows")])
def test_files_that_hold_no_upscaler_are_one_line(tmp_path, content, expected):
    torch.save(content, tmp_path / "w.pth")
    with pytest.raises(VqclipError, match=expected):
        load_upscaler(tmp_path / "w.pth")


def test_a_missing_file_and_an_unknown_format(tmp_path):
    with pytest.raises(VqclipError, match="no such upscaler weights file"):
        load_upscaler(tmp_path / "gone.pth")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(VqclipError, match="unknown upscaler weights format '.onnx'"):
        load_upscaler(tmp_path / "w.onnx")


def test_a_lower_scale_stays_within_0_1(compact):
    """Bicubic resizing overshoots at sharp edges: the result is clamped back into [0, 1]."""
    board = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2
    x = board.float().expand(1, 3, 16, 16).contiguous()
    out = upscale(compact, x, scale=3)
    assert tuple(out.shape) == (1, 3, 48, 48) and out.min() >= 0 and out.max() <= 1
