"""The looks (vqclip.terms) on the drawers that are not VQGAN: a hard palette on the pixel grid (pixel art in a
limited palette: pixray's pixel drawer snapped to a palette) and seamless tiles on pixel and fft, which wrap around
without a decoder to pad (a tile there is the random roll of the cutouts alone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqclip.cli import main
from vqclip.nets.tiling import circular


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def run(tmp_path, tiny_clip, drawer, *extra):
    out = tmp_path / drawer
    argv = ["generate", "a red circle", "--clip-model", str(tiny_clip[0]), "--clip-pretrained", str(tiny_clip[1]),
            "--size", "32", "32", "--cutn", "2", "--seed", "3", "--steps", "3", "--quiet", "--no-video",
            "--threads", "1", "--drawer", drawer, "--out", str(out), *extra]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("vqclip.nets.load.load_vqgan", lambda *a, **k: pytest.fail("a pixel/fft job loaded a VQGAN"))
        assert main(argv) == 0
    return pixels(out / "final.png")


def test_a_hard_palette_on_the_pixel_grid_is_pixel_art_in_the_palettes_colours(tmp_path, tiny_clip):
    image = run(tmp_path, tiny_clip, "pixel", "--set", "drawer.pixel_size=8", "--palette", "red,#1a2b3c",
                "--palette-hard")
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert colours <= {(255, 0, 0), (0x1A, 0x2B, 0x3C)}
    blocks = image.reshape(4, 8, 4, 8, 3)  # every 8x8 cell one colour
    assert (blocks == blocks[:, :1, :, :1]).all()


@pytest.mark.parametrize("drawer", ["pixel", "fft"])
def test_a_tiled_job_runs_on_drawers_without_a_decoder_to_pad(tmp_path, tiny_clip, drawer, monkeypatch):
    import vqclip.terms.tile as tile

    used, rolled, roll = [], [], tile.random_roll
    monkeypatch.setattr(tile, "circular", lambda decoder: used.append(decoder) or circular(decoder))
    monkeypatch.setattr(tile, "random_roll", lambda image, *a: rolled.append(image.shape) or roll(image, *a))
    image = run(tmp_path, tiny_clip, drawer, "--tile")
    assert image.shape == (32, 32, 3) and used == []  # no decoder was made circular: there is none
    assert len(rolled) == 3  # the cutouts saw a rolled image at each of the 3 steps
