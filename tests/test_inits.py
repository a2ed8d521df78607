"""Initial images: noise, gradient, flat, the prompt's background colour, files."""

import logging

import pytest
import torch

from vqclip.errors import VqclipError
from vqclip.optim.inits import initial_image, prompt_background
from vqclip.files.images import load_image
from vqclip.files.images import save_png


@pytest.mark.parametrize("prompt,rgb", [("a red circle on a blue background", (0, 0, 255)),
                                        ("a yellow square on black", (0, 0, 0)),
                                        ("a dog on an orange background", (255, 165, 0)),
                                        ("a lamp on the white wall", (255, 255, 255))])
def test_prompt_background_names_a_colour(prompt, rgb):
    assert prompt_background(prompt) == pytest.approx([c / 255 for c in rgb])


@pytest.mark.parametrize("prompt", ["toaster forest", "a cat on the beach", "on", ""])
def test_prompt_without_background_colour(prompt):
    assert prompt_background(prompt) is None


def test_background_init_is_flat_in_the_named_colour(caplog):
    g = torch.Generator().manual_seed(0)
    image = initial_image("background", 16, 8, g, prompt="a red circle on a green background")
    assert image.shape == (1, 3, 8, 16)
    assert torch.allclose(image, torch.tensor([0.0, 128 / 255, 0.0]).view(1, 3, 1, 1).expand_as(image), atol=1e-6)
    with caplog.at_level(logging.INFO, logger="vqclip"):
        fallback = initial_image("background", 4, 4, g, color=[0.1, 0.2, 0.3], prompt="toaster forest")
    assert "names no background colour" in caplog.text
    assert torch.allclose(fallback[0, :, 0, 0], torch.tensor([0.1, 0.2, 0.3]))
    named = initial_image("background", 4, 4, g, color=[0.1, 0.2, 0.3], prompt="a cat on a red background")
    assert torch.equal(named[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))  # the prompt's colour before init.color


def test_other_inits_shapes_and_ranges():
    g = torch.Generator().manual_seed(0)
    assert initial_image("random", 8, 8, g) is None
    for kind in ("pixels", "gradient", "flat"):
        image = initial_image(kind, 12, 6, g)
        assert image.shape == (1, 3, 6, 12) and image.min() >= 0 and image.max() <= 1
    with pytest.raises(VqclipError, match="unknown init"):
        initial_image("swirl", 8, 8, g)


def test_load_image_covers_and_crops(tmp_path):
    image = torch.zeros(1, 3, 20, 40)
    image[..., 10:30] = 1.0  # a white band in the middle
    save_png(image, tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", (10, 10))
    assert out.shape == (1, 3, 10, 10) and out.mean() > 0.9
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(VqclipError, match="not a readable image"):
        load_image(tmp_path / "bad.png")


def test_an_image_too_large_to_decode_safely_is_one_line(tmp_path, monkeypatch):
    """PIL's decompression-bomb guard: over its limit an error, not a traceback; near it an error, not a warning."""
    import warnings

    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for side in (12, 20):  # 144 pixels: PIL would only warn; 400 (over twice the limit): PIL raises
        save_png(torch.zeros(1, 3, side, side), tmp_path / f"{side}.png")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(VqclipError, match="not a readable image.*decompression bomb"):
                load_image(tmp_path / f"{side}.png")


def test_each_init_kind_is_drawn_from_the_runs_generator_as_documented(tmp_path):
    """pixels: uniform noise; gradient: a + (b - a) t, t = clamp((x cos θ + y sin θ) / 2 + 1/2) over x, y in [-1, 1],
    colours a, b and angle θ uniform; flat: the colour given, else a uniform one; image: the file covering the size."""
    import math

    def g():
        return torch.Generator().manual_seed(5)

    assert torch.equal(initial_image("pixels", 12, 6, g()), torch.rand(1, 3, 6, 12, generator=g()))
    r = g()
    a, b = torch.rand(2, 3, 1, 1, generator=r)
    angle = torch.rand((), generator=r).item() * 2 * math.pi
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 6), torch.linspace(-1, 1, 12), indexing="ij")
    t = ((xs * math.cos(angle) + ys * math.sin(angle)) / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(initial_image("gradient", 12, 6, g()), (a + (b - a) * t)[None], rtol=0, atol=1e-6)
    flat = initial_image("flat", 12, 6, g(), color=[0.1, 0.5, 0.9])
    assert torch.equal(flat, torch.tensor([0.1, 0.5, 0.9]).view(1, 3, 1, 1).expand(1, 3, 6, 12))
    assert torch.equal(initial_image("flat", 4, 4, g())[0, :, 2, 3], torch.rand(3, generator=g()))
    save_png(torch.rand(1, 3, 20, 40), tmp_path / "wide.png")
    assert torch.equal(initial_image("image", 10, 10, g(), image=str(tmp_path / "wide.png")),
                       load_image(tmp_path / "wide.png", (10, 10)))
