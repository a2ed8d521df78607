"""The image-only reader of vqclip.train.data (`read_images`, for `vqclip train vqgan`): images found recursively
and sorted, captions not asked for, unreadable and tiny images skipped with a count, and one-line errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from vqclip.errors import VqclipError
from vqclip.train.data import MIN_SIDE, read_images


def _png(path, w, h):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)


def test_images_are_found_recursively_sorted_and_the_bad_ones_counted(tmp_path, caplog):
    _png(tmp_path / "b.png", 20, 20)
    _png(tmp_path / "sub" / "a.jpg", MIN_SIDE, 40)  # at the limit: kept
    _png(tmp_path / "tiny.png", MIN_SIDE - 1, 40)  # one under: skipped
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_bytes(b"")
    with caplog.at_level(logging.INFO, logger="vqclip"):
        found = read_images(tmp_path)
    assert [p.image.relative_to(tmp_path).as_posix() for p in found] == ["b.png", "sub/a.jpg"]
    assert all(p.caption == "" for p in found)
    assert "skipped 2 of 4 images: 1 unreadable, 1 tiny" in caplog.text


def test_bad_folders_are_one_line(tmp_path):
    with pytest.raises(VqclipError, match="no such folder"):
        read_images(tmp_path / "absent")
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(VqclipError, match="not a folder"):
        read_images(tmp_path / "f.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VqclipError, match="the folder is empty"):
        read_images(empty)
    texts = tmp_path / "texts"
    (texts / "deep").mkdir(parents=True)
    (texts / "deep" / "a.txt").write_text("x")
    with pytest.raises(VqclipError, match="none of its 1 files is an image"):
        read_images(texts)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"junk")
    _png(bad / "b.png", 8, 8)
    with pytest.raises(VqclipError, match="none of its 2 images is readable and at least 16 px"):
        read_images(bad)
