"""The mini preset's guide: its near-miss scenes, and `python -m vqclip.mini.train guide` writing a loadable guide."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqclip.nets.guide import load_guide
from vqclip.mini import judge, world
from vqclip.mini.train import cli as train
from vqclip.mini.train import guide as tg


@pytest.mark.parametrize("seed", range(5))
def test_near_misses_are_not_world_shapes(seed):
    rng = np.random.default_rng(seed)
    rect = tg.rectangle_scene(rng)
    mask = np.any(rect != rect[0, 0], axis=-1)
    ys, xs = np.nonzero(mask)
    h, w = np.ptp(ys) + 1, np.ptp(xs) + 1
    assert max(h, w) / min(h, w) >= 1.3  # never a square
    clipped = tg.clipped_scene(rng)
    bg = max(world.COLORS.values(), key=lambda c: (clipped == c).all(-1).sum())
    shape = ~(clipped == bg).all(-1)
    assert shape.any() and (shape[0].any() or shape[-1].any() or shape[:, 0].any() or shape[:, -1].any())
    lumpy = tg.lumpy_scene(rng)
    assert len({tuple(c) for c in lumpy.reshape(-1, 3)}) == 2  # one shape colour on one background


def test_samples_cover_every_label_in_the_planned_shares():
    rng = np.random.default_rng(0)
    labels = np.array([tg.sample(rng)[1] for _ in range(600)])
    none_share = (labels == tg.NONE).mean()
    assert abs(none_share - sum(tg.NEAR_MISSES.values())) < 0.07
    assert all((labels == i).sum() > 80 for i in range(len(world.SHAPES)))
    assert tg.SPEC.labels[tg.NONE].startswith("_")  # never a prompt's target


def test_the_judge_agrees_the_proper_samples_are_their_kind():
    rng = np.random.default_rng(1)
    checked = 0
    while checked < 20:
        img, label = tg.sample(rng)
        if label != tg.NONE:
            mask = np.any(img != img[0, 0], axis=-1)
            assert judge.shape_kind(mask) == world.SHAPES[label]
            checked += 1


def test_train_guide_writes_a_guide_that_loads(tmp_path):
    figures = tg.train_guide(tmp_path, steps=2, batch_size=4, held_out=8)
    guide = load_guide(tmp_path / "guide.json", tmp_path / "guide.safetensors")
    assert guide.labels == tg.SPEC.labels and figures["steps"] == 2 and 0 <= figures["held_out_accuracy"] <= 1
    assert guide(torch.rand(2, 3, 64, 64)).shape == (2, len(tg.SPEC.labels))


def test_the_training_command_trains_the_guide(tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(tg, "train_guide", lambda out, **kw: seen.update(out=out, kw=kw) or {"acc": 0.5})
    assert train.main(["guide", "--out", str(tmp_path), "--seed", "2"]) == 0
    assert seen == {"out": tmp_path, "kw": {"seed": 2}} and '"acc": 0.5' in capsys.readouterr().out
