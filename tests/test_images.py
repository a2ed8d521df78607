"""Image files (vqclip/files/images.py): any image read as RGB, the cover-and-centre-crop resize, tensors and back
without loss, and PNG text chunks (wherever in the file they are) with the job as JSON."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from vqclip.errors import VqclipError
from vqclip.files.images import (cover, load_image, open_rgb, read_metadata, read_png_json, read_png_text, save_png,
                                 to_pil, to_tensor)


@pytest.mark.parametrize("mode, value, rgb", [("RGBA", (10, 20, 30, 0), (10, 20, 30)), ("L", 77, (77, 77, 77)),
                                              ("I;16", 65535, (255, 255, 255)), ("1", 1, (255, 255, 255)),
                                              ("CMYK", (0, 0, 0, 0), (255, 255, 255))])
def test_any_image_mode_is_read_as_rgb(tmp_path, mode, value, rgb):
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    Image.new(mode, (3, 2), value).save(path)
    im = open_rgb(path)
    assert im.mode == "RGB" and im.size == (3, 2) and im.getpixel((2, 1)) == rgb
    path.unlink()  # decoded and closed: the file is not needed any more
    assert im.getpixel((0, 0)) == rgb


def test_a_missing_folder_or_broken_image_is_one_line(tmp_path):
    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "dir.png").mkdir()
    for name, why in (("gone.png", "no such image file"), ("dir.png", "is a folder, not an image file"),
                      ("text.png", "not a readable image"), ("cut.png", "not a readable image")):
        with pytest.raises(VqclipError, match=why) as info:
            open_rgb(tmp_path / name)
        assert "\n" not in str(info.value)


def test_cover_scales_to_cover_and_crops_the_centre():
    wide = np.zeros((50, 100, 3), np.uint8)
    wide[:, :33] = (255, 0, 0)
    wide[:, 33:67] = (0, 255, 0)
    wide[:, 67:] = (0, 0, 255)
    out = np.asarray(cover(Image.fromarray(wide), (50, 50)))  # no scaling needed: columns 25..75 kept
    assert out.shape == (50, 50, 3) and np.array_equal(out, wide[:, 25:75])
    tall = np.zeros((20, 10, 3), np.uint8)
    tall[:10] = 255  # top half white
    out = np.asarray(cover(Image.fromarray(tall), (40, 40)))  # x4 to 40x80, rows 20..60 kept
    assert out.shape == (40, 40, 3)
    assert out[:18].min() > 240 and out[22:].max() < 15  # white above the middle, black below (Lanczos at the edge)
    same = Image.fromarray(wide)
    assert cover(same, (100, 50)) is same
    assert cover(same, (7, 300)).size == (7, 300)


def test_tensors_and_pil_images_round_trip_exactly():
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = to_tensor(Image.fromarray(array))
    assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32 and t.is_contiguous()
    assert torch.equal(t, torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255)
    assert np.array_equal(np.asarray(to_pil(t)), array) and np.array_equal(np.asarray(to_pil(t[0])), array)
    edge = torch.tensor([-1.0, 0.0, 0.2, 0.999, 1.0, 2.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    assert np.asarray(to_pil(edge))[0, :, 0].tolist() == [0, 0, 51, 255, 255, 255]  # clamped; 254.7 rounded up


def test_load_image_covers_the_size_asked(tmp_path):
    Image.new("RGB", (30, 10), (9, 9, 9)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png").shape == (1, 3, 10, 30)
    t = load_image(tmp_path / "a.png", (16, 8))
    assert t.shape == (1, 3, 8, 16) and torch.allclose(t, torch.full_like(t, 9 / 255), atol=1 / 255)


def test_save_png_keeps_pixels_job_and_parameters(tmp_path):
    image = torch.rand(1, 3, 6, 9)
    meta = {"config": {"prompt": "ünïcode ☃", "steps": 3}, "seed": 1}
    path = save_png(image, tmp_path / "final.png", meta, parameters="a snowman ☃\nSteps: 3, Seed: 1, Size: 9x6")
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(to_pil(image)))
    assert read_metadata(path) == meta and read_png_json(path) == meta
    texts = read_png_text(path)
    assert json.loads(texts["vqclip"]) == meta and texts["parameters"].startswith("a snowman ☃")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.png"]
    save_png(image, tmp_path / "bare.png")
    assert read_png_text(tmp_path / "bare.png") == {}


def test_a_text_chunk_after_the_image_data_is_read_too(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("before", "1")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png", pnginfo=info)
    data = (tmp_path / "a.png").read_bytes()
    text = b"vqclip\0" + json.dumps({"config": {"steps": 2}}).encode()
    late = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    end = data.index(b"IEND") - 4
    (tmp_path / "a.png").write_bytes(data[:end] + late + data[end:])
    assert read_png_text(tmp_path / "a.png") == {"before": "1", "vqclip": text[7:].decode()}
    assert read_metadata(tmp_path / "a.png") == {"config": {"steps": 2}}
