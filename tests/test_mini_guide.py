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


def test_a_guide_of_other_labels_trains_on_its_own_draw(tmp_path):
    """train_guide(spec=, draw=): a guide with a label of its own (the ring benchmark's), trained on what `draw`
    gives; batch(draw=) shows exactly those images through the VQGAN, with their labels."""
    from vqclip.nets.guide import GuideSpec

    spec = GuideSpec(labels=("dot", "bar", "_none"), widths=(8, 8), strides=(2, 2))
    drawn = []

    def draw(rng):
        img = np.zeros((64, 64, 3), np.uint8) + np.array(world.COLORS["blue"], np.uint8)
        label = int(rng.integers(3))
        img[28:36, 28:36 if label == 0 else 60] = world.COLORS["red"]
        drawn.append(label)
        return img, label

    from vqclip.mini import WEIGHTS_DIR
    from vqclip.nets.vqgan import load_vqgan

    vqgan = load_vqgan(WEIGHTS_DIR / "vqgan.yaml", WEIGHTS_DIR / "vqgan.safetensors")
    x, y = tg.batch(np.random.default_rng(0), 5, vqgan, draw)
    assert y.tolist() == drawn and x.shape == (5, 3, 64, 64)
    red = x[:, 0, 30, 32] > x[:, 2, 30, 32]  # the square's middle is red in every image, the bar's end only in bars
    assert red.all() and ((x[:, 0, 30, 50] > x[:, 2, 30, 50]) == (y != 0)).all()
    figures = tg.train_guide(tmp_path, steps=2, batch_size=4, held_out=8, spec=spec, draw=draw)
    guide = load_guide(tmp_path / "guide.json", tmp_path / "guide.safetensors")
    assert guide.labels == spec.labels and set(figures["held_out_by_label"]) == set(spec.labels)
    assert len(drawn) == 5 + 8 + 2 * 4  # the held-out images and both steps' batches came from `draw`


@pytest.mark.parametrize("native", [True, False])
def test_the_guide_batch_runs_the_vqgan_in_bf16_only_on_a_cpu_that_does_it_in_hardware(monkeypatch, native):
    """Emulated bf16 is ~40x slower than fp32 on a CPU without AVX512-BF16: there the batch's VQGAN runs in fp32."""
    seen = []
    monkeypatch.setattr("vqclip.nets.device.cpu_native_bf16", lambda: native)
    monkeypatch.setattr(tg, "reconstruct", lambda vqgan, x, amp: seen.append((vqgan, amp)) or x)
    x, y = tg.batch(np.random.default_rng(0), 3, "the vqgan")
    assert seen == [("the vqgan", torch.bfloat16 if native else None)] and x.shape == (3, 3, 64, 64) and len(y) == 3


def test_held_out_figures_count_each_label_against_its_own_images():
    """held_out_figures against a count by hand: a model whose predictions are fixed."""
    class Fixed(torch.nn.Module):
        labels = ("a", "b", "c")

        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()

    pred = torch.tensor([0, 0, 1, 2, 2, 1, 0, 2])
    y = torch.tensor([0, 1, 1, 2, 0, 1, 0, 1])
    x = pred.float().view(-1, 1, 1, 1).expand(-1, 3, 2, 2)
    model = Fixed().train()
    figures = tg.held_out_figures(model, x, y)
    assert not model.training  # scored in eval mode
    assert figures["held_out_accuracy"] == pytest.approx(5 / 8)
    # a: images 0, 4, 6 -> predicted a, c, a; b: images 1, 2, 5, 7 -> a, b, b, c; c: image 3 -> c
    assert figures["held_out_by_label"] == pytest.approx({"a": 2 / 3, "b": 2 / 4, "c": 1.0})


def test_a_fit_step_lowers_the_loss_on_its_batch():
    """fit_step: one optimiser step on label-smoothed cross-entropy (views through `augment`), the schedule stepped."""
    from vqclip.nets.guide import Guide, GuideSpec

    torch.manual_seed(0)
    model = Guide(GuideSpec(labels=("a", "b"), widths=(8,), strides=(2,)))
    x, y = torch.rand(8, 3, 64, 64), torch.tensor([0, 1] * 4)
    x[y == 1] *= 0.2  # dark images are b
    opt = torch.optim.SGD(model.parameters(), 0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    losses = [float(tg.fit_step(model, opt, sched, lambda v: v, x, y)) for _ in range(5)]
    assert losses[-1] < losses[0] and sched.last_epoch == 5
    with torch.no_grad():  # the loss it reports is the smoothed cross-entropy of the noisy views, near the clean one
        clean = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.05)
    assert abs(float(tg.fit_step(model, opt, sched, lambda v: v, x, y)) - float(clean)) < 0.1
