"""`vqclip search`'s index lives in vqclip's cache, keyed by the folder, not inside the user's image folder; an index
an earlier version left in the folder is read (no image embedded again) and left as it was."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tiny import write_clip
from vqclip.nets.clip import load_clip
from vqclip.tools.search import INDEX_NAME, ImageIndex, index_file


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    cfg, weights = write_clip(tmp_path_factory.mktemp("tinyclip"))
    return load_clip(str(cfg), str(weights))


@pytest.fixture
def folder(tmp_path):
    """Three random 32x32 images."""
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    return tmp_path / "imgs"


def test_the_index_goes_to_the_home_keyed_by_the_folder(tmp_path, monkeypatch):
    a, b = tmp_path / "one" / "pics", tmp_path / "two" / "pics"
    home = tmp_path / "vqclip-home"  # conftest's VQCLIP_HOME
    assert index_file(a).parent == home / "search" and index_file(a).name.startswith("pics-")
    assert index_file(a) != index_file(b)  # same name, another folder
    a.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "one")
    assert index_file("pics") == index_file(a)  # the same folder, however it is named
    monkeypatch.delenv("VQCLIP_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # platformdirs' user cache on Linux
    if os.name == "posix" and not os.environ.get("APPDATA"):
        assert index_file(a).parent == tmp_path / "xdg" / "vqclip" / "search"


def test_an_index_left_in_the_folder_is_read_and_left_as_it_was(clip, folder):
    old = ImageIndex(folder, clip, index_path=folder / INDEX_NAME)  # as earlier versions wrote it
    assert old.update() == 3
    before = (folder / INDEX_NAME).read_bytes()
    index = ImageIndex(folder, clip)
    assert index.update() == 0 and index.embedded == 0 and len(index) == 3  # nothing embedded again
    assert index_file(folder).is_file() and (folder / INDEX_NAME).read_bytes() == before
    for rel, vector in old.vectors.items():
        assert np.array_equal(index.vectors[rel].numpy(), vector.numpy())
    assert ImageIndex(folder, clip).update() == 0
