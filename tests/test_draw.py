"""The image models (vqclip.draw): the registry's names and errors, and the math of the pixel and fft drawers against
computations written here (repeat_interleave blocks, numpy's irfft2 with Lucid's constants)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqclip.config import merge_layers
from vqclip.config.checks import check
from vqclip.draw import registry
from vqclip.draw.fft import FFTDrawer, color_matrix, fft_image, fft_params, moving, spectrum_scale
from vqclip.draw.pixel import PixelDrawer, pixel_grid, pixel_image
from vqclip.errors import VqclipError


def test_every_registered_drawer_loads_as_the_class_of_its_name():
    for name in registry.DRAWERS:
        assert registry.load(name).name == name
    assert registry.load("pixel") is PixelDrawer and registry.load("fft") is FFTDrawer
    assert registry.uses_vqgan("vqgan") and not registry.uses_vqgan("pixel") and not registry.uses_vqgan("fft")


def test_an_unknown_drawer_is_one_line_naming_the_choices():
    with pytest.raises(VqclipError, match=r"^drawer.name: unknown drawer 'pixl'; use one of vqgan, pixel, fft$"):
        registry.load("pixl")


@pytest.mark.parametrize("key, value, ok", [("pixel_size", 0, False), ("pixel_size", 1, True),
                                            ("pixel_size", 4096, True), ("pixel_size", 4097, False),
                                            ("decay", -0.01, False), ("decay", 0.0, True), ("decay", 4.0, True),
                                            ("decay", 4.01, False), ("name", "rgb", False), ("name", "fft", True),
                                            ("cutoff", 0.0, False), ("cutoff", 1e-6, True), ("cutoff", 1.0, True),
                                            ("cutoff", 1.0001, False)])
def test_the_drawer_options_are_checked_at_each_boundary(key, value, ok):
    layers = [("t", {"prompt": "x", "drawer": {key: value}})]
    if ok:
        check(merge_layers(layers))
        return
    with pytest.raises(VqclipError, match=f"^drawer.{key}: "):
        check(merge_layers(layers))


# ---- pixel ----

def blocks(grid: torch.Tensor, p: int) -> torch.Tensor:
    """Each cell repeated into a p x p block, written independently of F.interpolate."""
    return grid.repeat_interleave(p, dim=-2).repeat_interleave(p, dim=-1)


def test_pixel_decode_is_constant_on_each_block_and_its_gradient_is_the_block_sum():
    g = torch.Generator().manual_seed(0)
    grid = torch.rand(2, 3, 4, 5, generator=g).requires_grad_(True)
    image = pixel_image(grid, 3)
    assert image.shape == (2, 3, 12, 15) and torch.equal(image, blocks(grid.detach(), 3))
    w = torch.randn(image.shape, generator=g)
    (image * w).sum().backward()
    torch.testing.assert_close(grid.grad, w.reshape(2, 3, 4, 3, 5, 3).sum((3, 5)))


def test_pixel_encode_is_the_block_means_and_inverts_decode():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 8, 12, generator=g)
    torch.testing.assert_close(pixel_grid(image, 4), image.reshape(1, 3, 2, 4, 3, 4).mean((3, 5)))
    grid = torch.rand(1, 3, 2, 3, generator=g)
    torch.testing.assert_close(pixel_grid(pixel_image(grid, 4), 4), grid)


def test_pixel_projection_clamps_to_colours_both_sides():
    z = torch.tensor([-0.5, 0.0, 0.3, 1.0, 1.7]).view(1, 1, 1, 5).expand(1, 3, 1, 5).clone()
    PixelDrawer.project(None, z)
    assert z[0, 0, 0].tolist() == [0.0, 0.0, pytest.approx(0.3), 1.0, 1.0]


# ---- fft ----

def lucid_image(spectrum: np.ndarray, h: int, w: int, decay: float) -> np.ndarray:
    """Lucid's fft_image + to_valid_rgb in numpy: spectrum [B,3,h,w//2+1] complex -> image [B,3,h,w]."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 1]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay * np.sqrt(w * h)
    x = np.fft.irfft2(scale * spectrum, s=(h, w)) / 4.0
    c = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    c = c / np.linalg.norm(c, axis=0)  # vqclip's one departure here: unit columns (Lucid: / the largest column norm)
    mixed = np.einsum("ij,bjhw->bihw", c, x)
    return 1 / (1 + np.exp(-mixed))


@pytest.mark.parametrize("h, w, decay", [(8, 12, 1.0), (9, 7, 1.5), (6, 6, 0.0)])
def test_fft_decode_is_lucids_fft_image_with_decorrelated_colour(h, w, decay):
    rng = np.random.default_rng(3)
    spectrum = rng.normal(size=(2, 3, h, w // 2 + 1)) + 1j * rng.normal(size=(2, 3, h, w // 2 + 1))
    params = torch.tensor(np.concatenate([spectrum.real, spectrum.imag], 1), dtype=torch.float32)
    image = fft_image(params, spectrum_scale(h, w, decay), h, w)
    np.testing.assert_allclose(image.numpy(), lucid_image(spectrum, h, w, decay), rtol=1e-4, atol=1e-5)


def test_fft_scale_of_one_frequency_written_out():
    """Width 8, height 4: frequency (0, 1/8) scales by (1/8)^-1 * sqrt(32); DC by max(0, 1/8)^-1 * sqrt(32)."""
    s = spectrum_scale(4, 8, 1.0)
    assert s.shape == (4, 5)
    assert s[0, 1].item() == pytest.approx(8 * 32 ** 0.5) and s[0, 0].item() == pytest.approx(8 * 32 ** 0.5)
    assert s[0, 4].item() == pytest.approx(2 * 32 ** 0.5) and s[1, 0].item() == pytest.approx(4 * 32 ** 0.5)


def test_fft_encode_inverts_decode_and_the_gradient_reaches_every_frequency_band():
    g = torch.Generator().manual_seed(5)
    scale = spectrum_scale(8, 10, 1.0)
    image = 0.1 + 0.8 * torch.rand(1, 3, 8, 10, generator=g)
    params = fft_params(image, scale).requires_grad_(True)
    decoded = fft_image(params, scale, 8, 10)
    torch.testing.assert_close(decoded, image, rtol=0, atol=1e-4)
    (decoded * torch.randn(decoded.shape, generator=g)).sum().backward()
    grad = params.grad.abs().sum((0, 1))
    assert grad[0, 0] > 0 and grad[4, 5] > 0 and grad[1, 2] > 0


def test_fft_encodes_black_and_white_within_the_edge_where_the_sigmoid_still_moves():
    from vqclip.draw.fft import EDGE

    scale = spectrum_scale(4, 6, 1.0)
    image = torch.zeros(1, 3, 4, 6)
    image[..., 3:] = 1.0
    params = fft_params(image, scale)
    assert torch.isfinite(params).all()
    decoded = fft_image(params, scale, 4, 6)
    torch.testing.assert_close(decoded[..., :3], torch.full((1, 3, 4, 3), EDGE), rtol=0, atol=1e-4)
    torch.testing.assert_close(decoded[..., 3:], torch.full((1, 3, 4, 3), 1 - EDGE), rtol=0, atol=1e-4)


def test_fft_colour_directions_are_lucids_each_at_unit_length():
    c = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    m = color_matrix().numpy()
    np.testing.assert_allclose(np.linalg.norm(m, axis=0), 1.0, rtol=1e-6)
    for j in range(3):  # the same direction as Lucid's column, a positive multiple of it
        cos = m[:, j] @ c[:, j] / np.linalg.norm(c[:, j])
        assert cos == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("h, w, cutoff", [(8, 10, 0.125), (9, 7, 0.25), (6, 6, 1.0)])
def test_fft_moves_exactly_the_frequencies_up_to_the_cutoff(h, w, cutoff):
    """Written out: frequency (fy, fx) with fy = fftfreq(h), fx = rfftfreq(w) moves iff sqrt(fx^2 + fy^2) <= cutoff;
    the gradient reaches exactly those, and the decoded image is the same with or without the mask."""
    fy, fx = np.fft.fftfreq(h), np.fft.rfftfreq(w)
    want = np.array([[np.hypot(a, b) <= cutoff for b in fx] for a in fy])
    got = moving(h, w, cutoff)
    assert np.array_equal(got.numpy(), want)
    g = torch.Generator().manual_seed(1)
    scale = spectrum_scale(h, w, 1.0)
    params = torch.randn(1, 6, h, w // 2 + 1, generator=g).requires_grad_(True)
    image = fft_image(params, scale, h, w, got)
    torch.testing.assert_close(image, fft_image(params, scale, h, w), rtol=0, atol=0)
    (image * torch.randn(image.shape, generator=g)).sum().backward()
    reached = params.grad.abs().sum((0, 1)) > 0
    assert torch.equal(reached, got)


def test_fft_a_frequency_exactly_at_the_cutoff_moves():
    """Width 8: frequency (0, 1/8) is exactly 0.125 cycles per pixel: it moves at cutoff 0.125, not just below."""
    assert moving(4, 8, 0.125)[0, 1] and not moving(4, 8, 0.1249)[0, 1] and moving(4, 8, 0.1249)[0, 0]


@pytest.mark.parametrize("cutoff", [0.2, 1.0])
def test_the_fft_drawer_moves_only_the_jobs_frequencies_up_to_its_cutoff(cutoff, tiny_models):
    cfg = merge_layers([("t", {"prompt": "x", "drawer": {"name": "fft", "cutoff": cutoff}})])
    d = FFTDrawer(cfg, tiny_models, torch.device("cpu"), 10, 8)
    params = d.random(1, torch.Generator().manual_seed(0)).requires_grad_(True)
    d.decode(params).sum().backward()
    assert torch.equal(params.grad.abs().sum((0, 1)) > 0, moving(8, 10, cutoff))
    assert d.speed_options()["cutoff"] == cutoff
