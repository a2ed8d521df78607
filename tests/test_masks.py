"""The mask math of an edit (vqclip.optim.masks), each function against a computation written here: the feather's
band by brute-force distances, the cells by block maxima, the composite and the outpaint canvas pixel for pixel, the
start image under each mask_init."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from vqclip.config import InitConfig
from vqclip.errors import VqclipError
from vqclip.optim.inits import canvas_size, wants_edit
from vqclip.optim.masks import canvas, composite, edit_of, feather, mask_tensor, start_image, to_cells


def chessboard_ramp(mask: np.ndarray, pixels: int) -> np.ndarray:
    """The feather written out: each pixel the largest v - d / (pixels + 1) over the mask's pixels of value v at
    chessboard distance d <= pixels (0 where none is that near)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for y in range(h):
        for x in range(w):
            best = 0.0
            for yy in range(max(0, y - pixels), min(h, y + pixels + 1)):
                for xx in range(max(0, x - pixels), min(w, x + pixels + 1)):
                    d = max(abs(y - yy), abs(x - xx))
                    best = max(best, mask[yy, xx] - d / (pixels + 1))
            out[y, x] = best
    return out


@pytest.mark.parametrize("pixels", [0, 1, 3])
def test_the_feather_is_a_band_of_exactly_its_width_falling_linearly(pixels):
    mask = np.zeros((12, 14), np.float32)
    mask[4:7, 5:8] = 1.0
    mask[10, 1] = 0.5  # a grey pixel: its band is shorter, its own value kept
    got = feather(torch.from_numpy(mask)[None, None], pixels)[0, 0].numpy()
    np.testing.assert_allclose(got, chessboard_ramp(mask, pixels), atol=1e-6)
    assert (got >= mask).all()
    beyond = chessboard_ramp((mask > 0).astype(np.float32), pixels) == 0  # farther than the band from any mask pixel
    near_white = chessboard_ramp((mask == 1).astype(np.float32), pixels) > 0
    assert (got[beyond] == 0).all() and (got[near_white] > 0).all()


def test_the_cells_of_a_mask_are_each_the_largest_value_they_cover():
    mask = torch.rand(1, 1, 8, 12, generator=torch.Generator().manual_seed(0)) * (torch.rand(1, 1, 8, 12) > 0.7)
    cells = to_cells(mask, 4)
    blocks = mask.reshape(2, 4, 3, 4).permute(0, 2, 1, 3).reshape(2, 3, 16)
    assert torch.equal(cells[0, 0], blocks.max(-1).values)
    assert torch.equal(to_cells(mask, 1), mask)


def test_the_composite_is_the_base_exactly_where_the_mask_is_0_and_the_image_where_it_is_1():
    g = torch.Generator().manual_seed(1)
    base, image = torch.rand(1, 3, 6, 6, generator=g), torch.rand(2, 3, 6, 6, generator=g)
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., 1:3, 1:3], mask[..., 4, 4] = 1.0, 0.25
    out = composite(base, image, mask)
    keep = (mask == 0).expand(2, 3, 6, 6)
    assert torch.equal(out[keep], base.expand(2, 3, 6, 6)[keep])
    assert torch.equal(out[..., 1:3, 1:3], image[..., 1:3, 1:3])
    assert torch.allclose(out[..., 4, 4], 0.75 * base[..., 4, 4] + 0.25 * image[..., 4, 4])


def test_a_mask_file_is_its_luminance_resized_to_the_image_with_a_notice(tmp_path, caplog):
    grey = np.zeros((4, 6), np.uint8)
    grey[1, 2], grey[2, 3] = 255, 128
    Image.fromarray(grey).convert("RGB").save(tmp_path / "m.png")
    same = mask_tensor(tmp_path / "m.png", (6, 4))
    assert torch.equal(same[0, 0], torch.from_numpy(grey.astype(np.float32) / 255))
    with caplog.at_level(logging.INFO, logger="vqclip"):
        bigger = mask_tensor(tmp_path / "m.png", (12, 8))
    assert bigger.shape == (1, 1, 8, 12) and "the mask is 6x4; resized to the image's 12x8" in caplog.text
    expect = torch.nn.functional.interpolate(same, size=(8, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(bigger, expect)


@pytest.mark.parametrize("shape", [(5, 7), (1, 5, 7), (1, 1, 5, 7)])
def test_a_mask_tensor_of_one_channel_is_taken_as_it_is(shape):
    values = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    assert torch.equal(mask_tensor(values, (7, 5))[0, 0], values.reshape(5, 7))


@pytest.mark.parametrize("source, expected", [(torch.zeros(4, 4), "all black"), (torch.rand(3, 4, 4), "one channel"),
                                              (Image.new("L", (4, 4)), "all black")])
def test_an_all_black_or_colour_mask_is_one_line(source, expected):
    with pytest.raises(VqclipError, match=expected):
        mask_tensor(source, (4, 4))


def test_the_canvas_holds_the_original_unchanged_and_stretches_its_edges():
    original = torch.rand(1, 3, 4, 5, generator=torch.Generator().manual_seed(3))
    base, held = canvas(original, (2, 1, 3, 0), (10, 6))
    assert base.shape == (1, 3, 6, 10)
    assert torch.equal(base[..., 1:5, 2:7], original)
    assert torch.equal(base[..., 1:5, 0], original[..., :, 0]) and torch.equal(base[..., 1:5, 9], original[..., :, -1])
    assert torch.equal(base[..., 0, 2:7], original[..., 0, :]) and torch.equal(base[..., 5, 2:7], original[..., -1, :])
    assert held.sum() == 20 and torch.equal(held[..., 1:5, 2:7], torch.ones(1, 1, 4, 5))
    with pytest.raises(VqclipError, match="cuts the 5x4 original"):
        canvas(original, (2, 1, 0, 0), (6, 6))


def test_the_start_under_the_mask_is_the_image_noise_or_its_blur():
    g = torch.Generator().manual_seed(4)
    base = torch.rand(1, 3, 32, 32, generator=g)
    mask, none = torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    rng = torch.Generator().manual_seed(5)
    before = rng.get_state()
    assert torch.equal(start_image(base, mask, none, "keep", rng), base)
    assert torch.equal(rng.get_state(), before)  # nothing drawn: a keep start uses no randomness
    noisy = start_image(base, mask, none, "noise", torch.Generator().manual_seed(5))
    noise = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    assert torch.equal(noisy[..., 8:24, 8:24], noise[..., 8:24, 8:24])
    assert torch.equal(noisy[..., :8, :], base[..., :8, :]) and torch.equal(noisy[..., :, 24:], base[..., :, 24:])
    blurred = start_image(base, mask, none, "blur", rng)
    means = base.reshape(1, 3, 2, 16, 2, 16).mean((3, 5))  # the image's 16x16 block means, spread bilinearly
    spread = torch.nn.functional.interpolate(means, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(blurred[..., 8:24, 8:24], spread[..., 8:24, 8:24], atol=1e-6)
    assert torch.equal(blurred[..., :8, :], base[..., :8, :])
    new = torch.zeros(1, 1, 32, 32)
    new[..., :, 28:] = 1
    kept = start_image(base, torch.maximum(mask, new), new, "keep", torch.Generator().manual_seed(5))
    assert torch.equal(kept[..., 28:], noise[..., 28:]) and torch.equal(kept[..., :28], base[..., :28])


def _init(tmp_path, **over) -> InitConfig:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "i.png")
    return InitConfig(kind="image", image=str(tmp_path / "i.png"), **over)


def test_an_outpaint_keeps_the_original_and_feathers_its_seam_into_the_new_area(tmp_path):
    init = _init(tmp_path, extend=[0, 0, 64, 0], mask_feather=3)
    assert wants_edit(init) and canvas_size([64, 64], init.extend) == [128, 64]
    assert canvas_size([10, 20], [1, 2, 3, 4]) == [14, 26] and canvas_size([10, 20], [0, 0, 0, 0]) == [10, 20]
    edit = edit_of(init, [64, 64], 128, 64)
    original = torch.from_numpy(np.asarray(Image.open(tmp_path / "i.png"), np.float32) / 255).permute(2, 0, 1)
    assert torch.equal(edit.base[0, :, :, :64], original)
    assert (edit.mask[..., :64] == 0).all() and (edit.new[..., :64] == 0).all() and (edit.new[..., 64:] == 1).all()
    ramp = torch.tensor([1 / 4, 2 / 4, 3 / 4, 1.0, 1.0])  # the seam: d / (feather + 1) at d pixels into the new area
    assert torch.allclose(edit.mask[0, 0, :, 64:69], ramp.expand(64, 5))


def test_a_mask_with_an_outpaint_lies_on_the_original(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 30:40] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    edit = edit_of(_init(tmp_path, mask=str(tmp_path / "m.png"), extend=[16, 0, 0, 0], mask_feather=0), [64, 64],
                   80, 64)
    assert (edit.mask[0, 0, 10:20, 46:56] == 1).all() and edit.mask[0, 0, :, 16 + 4:].sum() == 100
    assert edit_of(InitConfig(), [64, 64], 64, 64) is None


def test_the_mask_of_an_edit_is_the_mask_file_feathered(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 5:15], mask[50, 50] = 255, 200
    Image.fromarray(mask).save(tmp_path / "m.png")
    edit = edit_of(_init(tmp_path, mask=str(tmp_path / "m.png"), mask_feather=2), [64, 64], 64, 64)
    expect = chessboard_ramp(mask.astype(np.float32) / 255, 2)
    np.testing.assert_allclose(edit.mask[0, 0].numpy(), expect, atol=1e-6)
    assert (edit.new == 0).all() and edit.base.shape == (1, 3, 64, 64)
