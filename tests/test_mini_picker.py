"""The mini preset's picker CLIP: lumpy scenes it learns to call blobs, and its training writing loadable weights."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vqclip.mini import WEIGHTS_DIR, world
from vqclip.mini.train_picker import lumpy_batch, lumpy_scene

needs_vqgan = pytest.mark.skipif(not (WEIGHTS_DIR / "vqgan.safetensors").is_file(), reason="mini VQGAN not built")


def test_a_lumpy_scene_is_its_shape_pushed_out_of_shape_and_captioned_a_blob():
    for seed in range(20):
        img, scene = lumpy_scene(np.random.default_rng(seed))
        again, _ = lumpy_scene(np.random.default_rng(seed))
        assert np.array_equal(img, again), "same seed, same scene"
        shape = scene.shapes[0]
        clean = world.shape_mask(shape)
        drawn = (img == world.COLORS[shape.color]).all(-1)
        moved = (clean ^ drawn).sum() / clean.sum()
        assert 0.02 < moved < 0.8, f"seed {seed}: the outline moved by {moved:.2f} of the area"
        assert (img[~drawn] == world.COLORS[scene.background]).all()  # one shape on a flat background
        assert world.parse_caption(world.caption(scene, np.random.default_rng(0))) == world.Attributes(
            shape.color, "blob", scene.background)


def test_lumpy_batch_matches_its_captions():
    x, caps, attrs = lumpy_batch(np.random.default_rng(1), 5)
    assert x.shape == (5, 3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert [world.parse_caption(c) for c in caps] == attrs and all(a.shape == "blob" for a in attrs)


@needs_vqgan
def test_training_writes_a_clip_that_loads_like_any_other(tmp_path):
    import torch

    from vqclip.mini.train_picker import train_picker
    from vqclip.models import load_clip

    for name in ("vqgan.yaml", "vqgan.safetensors"):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    figures = train_picker(tmp_path, steps=2, batch_size=8, lumpy=4)
    assert figures["steps"] == 2 and 0 <= figures["shape"] <= 1
    clip = load_clip(str(tmp_path / "picker.json"), str(tmp_path / "picker.safetensors"))
    emb = clip.encode_image(torch.rand(2, 3, 64, 64))
    assert emb.shape == (2, 64) and torch.isfinite(emb).all()


def test_training_without_the_vqgan_is_one_line(tmp_path, capsys):
    from vqclip.mini import train

    assert train.main(["picker", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "picker sees its scenes through the mini VQGAN" in err[0]
    assert f"python -m vqclip.mini.train vqgan --out {tmp_path}" in err[0]
