"""The objective's plan and terms (vqclip.optim.objective): the size it decodes, the names and shares of its CLIP
terms, which prior terms it adds, the precision and memory plan of a batch of starts, and the weights it scores with."""

import copy
import logging

import pytest
import torch

from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.nets.load import Models
from vqclip.optim.objective import Objective, clip_term_names, rounded_size
from vqclip.optim.prompts import Prompt

CPU = torch.device("cpu")


def job(tiny_job, **over):
    return merge_layers([("tiny", tiny_job), ("t", {"prompt": "a red circle", "steps": 4, "seed": 1, **over})])


def test_sizes_round_to_the_nearest_multiple_of_the_factor_never_below_it(caplog):
    with caplog.at_level(logging.INFO, logger="vqclip"):
        assert rounded_size([32, 48], 16) == (32, 48)
    assert caplog.text == ""  # unchanged: no notice
    with caplog.at_level(logging.INFO, logger="vqclip"):
        assert rounded_size([37, 69], 4) == (36, 68)
    assert "size 37x69 rounded to 36x68" in caplog.text
    assert rounded_size([39, 2], 4) == (40, 4) and rounded_size([1, 100], 16) == (16, 96)


def test_each_clip_has_its_own_term_even_when_two_share_a_name():
    assert clip_term_names(["ViT-B-32"]) == ["clip:ViT-B-32"]
    assert clip_term_names(["a", "b", "a"]) == ["clip:a#0", "clip:b", "clip:a#2"]


def test_a_term_of_weight_zero_is_left_out(tiny_job, tiny_models):
    """init.weight 0 and tv_weight 0 add no term (not even a zero one); a CLIP of weight 0 has no share and no term;
    the shares are each CLIP's weight over the sum."""
    other = copy.deepcopy(tiny_models.clips[0][0])
    other.name = "other"
    for clips, shares in (([(1.0, "clip"), (0.0, "other")], [1.0, 0.0]),
                          ([(1.0, "clip"), (3.0, "other")], [0.25, 0.75])):
        models = Models(tiny_models.vqgan, [(tiny_models.clips[0][0], clips[0][0]), (other, clips[1][0])])
        objective = Objective(job(tiny_job, tv_weight=0.0, init={"weight": 0.0}), models, CPU)
        assert objective.clip_weights == shares
        z = torch.zeros(1, 8, 8, 8)
        parts = objective.losses(objective.decode(z), z, z + 1, 0)
        assert set(parts) == {f"clip:{name}" for w, name in clips if w > 0}
    objective = Objective(job(tiny_job, tv_weight=1e-9, init={"weight": 1e-9}), tiny_models, CPU)
    parts = objective.losses(objective.decode(z), z, z + 1, 0)
    assert set(parts) == {"clip:clip", "tv", "init"} and parts["init"].item() == pytest.approx(1e-9)


@pytest.mark.parametrize("precision, n, batch, amp", [
    ("bf16", 1, 1, torch.bfloat16), ("fp32", 16, 16, None),
    ("auto", 16, 1, torch.bfloat16),  # 16 starts of 32x32 = 128x128 pixels a step: the chosen one goes on in bf16
    ("auto", 15, 1, None), ("auto", 15, 15, None),  # one start short of it
    ("auto", 1, 16, torch.bfloat16)])
def test_the_precision_is_decided_by_the_pixels_of_a_step_with_all_starts(tiny_job, tiny_models, monkeypatch,
                                                                          precision, n, batch, amp):
    """precision auto on a CPU with native bf16: bf16 from 128x128 pixels a step (all best-of-n starts together, the
    same for the trials and the start that goes on alone), fp32 below; bf16 and fp32 are forced."""
    monkeypatch.setattr("vqclip.nets.device.cpu_native_bf16", lambda: True)
    cfg = job(tiny_job, precision=precision, candidates={"n": n, "steps": 2})
    assert Objective(cfg, tiny_models, CPU, batch=batch).amp == amp


@pytest.mark.parametrize("size, amp", [([127, 129], torch.bfloat16), ([130, 126], torch.bfloat16),
                                       ([124, 132], None), ([128, 124], None)])
def test_the_precision_counts_the_pixels_decoded_after_rounding(tiny_job, tiny_models, monkeypatch, size, amp):
    """127x129 (16383 pixels asked) decodes 128x128 (factor 4): 128x128 pixels or more, so bf16; 124x132 decodes
    16368 pixels, fp32."""
    monkeypatch.setattr("vqclip.nets.device.cpu_native_bf16", lambda: True)
    objective = Objective(job(tiny_job, precision="auto", size=size), tiny_models, CPU)
    assert objective.amp == amp
    assert (objective.width * objective.height >= 128 * 128) == (amp is not None)


def test_the_memory_plan_counts_the_cutouts_of_every_start(tiny_job, tiny_models):
    """memory low: decoder checkpointing and at most 8 cutouts per CLIP pass, of all starts' cutouts together (3
    cutouts x 2 starts = 6); memory normal: the micro_batch asked for, no checkpointing."""
    low = job(tiny_job, memory="low", cutouts={"n": 3})
    assert (Objective(low, tiny_models, CPU).checkpoint, Objective(low, tiny_models, CPU).micro_batch) == (True, 3)
    two = Objective(low, tiny_models, CPU, batch=2)
    assert (two.checkpoint, two.micro_batch) == (True, 6)
    assert Objective(low, tiny_models, CPU, batch=4).micro_batch == 8
    normal = Objective(job(tiny_job, memory="normal", micro_batch=2), tiny_models, CPU, batch=2)
    assert (normal.checkpoint, normal.micro_batch) == (False, 2)
    assert normal.speed_options() == {"precision": "fp32", "lean_decoder": True, "checkpoint": False,
                                      "micro_batch": 2, "compile": False, "decoder_layout": "nchw"}


def test_the_weights_are_the_prompts_own_until_replaced(tiny_job, tiny_models):
    objective = Objective(job(tiny_job, prompt="a red circle:2|a square:-0.5:1", negative=["blurry"]), tiny_models,
                          CPU)
    assert objective.weights_at(7).tolist() == [2.0, -0.5, -1.0] == objective.host_weights_at(7)
    assert objective.stops.tolist() == [float("-inf"), 1.0, float("-inf")]
    assert [t.shape for t in objective.targets] == [(3, 32)]
    with pytest.raises(VqclipError, match="nothing to aim at"):
        objective.set_prompts([Prompt("a cat", -0.5)])
    objective.set_prompts([Prompt("a cat", 0.5, stop=-0.25)])
    assert objective.weights_at(7).tolist() == [0.5] == objective.host_weights_at(7)
    assert objective.stops.tolist() == [-0.25] and objective.schedule is None
    clip = tiny_models.clips[0][0]
    torch.testing.assert_close(objective.targets[0], clip.encode_text(["a cat"]))


def test_the_cutouts_are_the_jobs(tiny_job, tiny_models):
    """One sampler per CLIP input size, with the job's cutouts.n, pow, min_size, augments (in order) and noise."""
    import kornia.augmentation as K

    cfg = job(tiny_job, cutouts={"n": 3, "pow": 2.0, "min_size": 0.5, "augments": ["flip", "noise", "jitter"],
                                 "noise": 0.3})
    cut = Objective(cfg, tiny_models, CPU).cutouts
    assert list(cut) == [32]
    c = cut[32]
    assert (c.cut_size, c.n, c.cut_pow, c.min_frac, c.noise) == (32, 3, 2.0, 0.5, 0.3)
    assert [type(s) for s in c.augment.children()] == [K.RandomHorizontalFlip, K.ColorJitter]
