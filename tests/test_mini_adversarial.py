"""Stages 3 and 4 of mini CLIP training: the generator pool, the losses with generator negatives, the stages."""
import functools
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vqclip.errors import VqclipError
from vqclip.optim.objective import decode_image
from vqclip.mini import WEIGHTS_DIR, judge, world
from vqclip.mini.train import clip as clip_train
from vqclip.mini.train.adversarial import GeneratorPool, reconstruct
from vqclip.mini.train.clip import _train, consistent, contrastive_loss, paired_loss, training_model
from vqclip.nets.clip import load_clip
from vqclip.nets.vqgan import load_vqgan
from vqclip.nets.quantize import clamp_with_grad, vector_quantize


@pytest.fixture(scope="module")
def mini():
    """The shipped VQGAN (frozen) and the shipped CLIP as training sees it: a plain open_clip model, trainable."""
    vq = load_vqgan(WEIGHTS_DIR / "vqgan.yaml", WEIGHTS_DIR / "vqgan.safetensors")
    return (vq, *training_model(WEIGHTS_DIR / "clip.safetensors"))


def test_pool_starts_flat_in_the_background_colour_and_restarts_after_its_life(mini):
    vq, model, tok = mini
    pool = GeneratorPool(vq, np.random.default_rng(0), size=3, life=4, min_age=2)
    pool.age[:] = 0
    start = pool.decode(pool.z).detach()
    for i, text in enumerate(pool.captions):  # each start decodes to a flat image in its caption's background colour
        names = judge.classify_pixels(judge.to_array(start[i]))
        assert (names == judge.COLOR_NAMES.index(world.parse_caption(text).background)).mean() > 0.95, text
    assert pool.negatives()[0].shape[0] == 0  # nothing has left its start yet
    first = list(pool.captions)
    for _ in range(3):
        pool.step(model, tok)
    images, captions = pool.negatives()
    assert images.shape == (3, 3, 64, 64) and captions == first
    pool.step(model, tok)  # age 4 = life: every latent restarts
    assert pool.age.tolist() == [0, 0, 0] and pool.m.abs().sum() == 0 and pool.negatives()[0].shape[0] == 0


def test_pool_steps_bring_images_towards_their_captions(mini):
    vq, model, tok = mini
    torch.manual_seed(0)
    pool = GeneratorPool(vq, np.random.default_rng(1), size=4, life=1000)
    pool.age[:] = 0
    dist = [pool.step(model, tok) for _ in range(25)]
    assert np.mean(dist[-5:]) < dist[0] - 0.1
    assert all(p.grad is None for p in model.parameters())  # CLIP itself is not trained by the pool


def test_fp32_decode_is_the_taming_decoder_bit_for_bit(mini):
    """Stage 4 and generation on CPU decode through the lean decoder: it must not change the recipe's numbers."""
    vq = mini[0]
    torch.manual_seed(1)
    z, w = torch.randn(3, 64, 8, 8) * 0.3, torch.randn(3, 3, 64, 64)
    out = []
    taming = lambda z: clamp_with_grad(vq.decode(vector_quantize(z, vq.codebook)).float(), 0, 1)  # noqa: E731
    for fn in (lambda z: decode_image(vq, z), taming):
        z1 = z.clone().requires_grad_(True)
        image = fn(z1)
        (image * w).sum().backward()
        out.append((image.detach(), z1.grad))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_bf16_decode_picks_the_fp32_codes_and_stays_close_to_the_fp32_image(mini):
    vq = mini[0]
    torch.manual_seed(0)
    # latents half-way between two codes: a bf16 distance would often pick the other one
    a, b = vq.codebook[torch.randint(0, vq.n_embed, (2, 4 * 8 * 8))]
    z = (0.5 * (a + b) + 1e-3 * (b - a)).view(4, 8, 8, -1).movedim(-1, 1).contiguous().requires_grad_(True)
    ref, low = decode_image(vq, z), decode_image(vq, z, torch.bfloat16)
    assert low.dtype == torch.float32 and low.shape == (4, 3, 64, 64)
    assert (low - ref).abs().mean() < 0.01 and (low - ref).abs().max() < 0.15  # same codes: no jump anywhere
    low.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # straight through to the latent
    x = torch.from_numpy(np.stack([world.render(world.sample_scene(np.random.default_rng(i))) for i in range(4)]))
    x = x.permute(0, 3, 1, 2).float() / 255
    r32, r16 = reconstruct(vq, x), reconstruct(vq, x, torch.bfloat16)
    assert (r16 - r32).abs().mean() < 0.01 and 0 <= r16.min() and r16.max() <= 1


def test_consistent_matches_captions_to_what_images_show():
    show = [world.parse_caption(c) for c in ("a red circle on a blue background", "two red circles on blue",
                                             "red fragments on a blue background", "a red circle on green")]
    say = [world.parse_caption(c) for c in ("a red circle", "a red circle on blue", "two red circles",
                                            "red fragments on a blue background", "a blue circle")]
    assert consistent(show, say).int().tolist() == [[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0],
                                                     [1, 0, 0, 0, 0]]


def test_generator_negatives_raise_the_loss_when_they_look_like_the_caption():
    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(4, 16), dim=-1), F.normalize(torch.randn(4, 16), dim=-1)
    pos, scale = torch.eye(4, dtype=torch.bool), torch.tensor(np.log(10.0))
    base = contrastive_loss(img, txt, scale, pos)
    assert torch.allclose(contrastive_loss(img, txt, scale, pos, torch.empty(0, 16)), base)
    close, far = contrastive_loss(img, txt, scale, pos, txt.clone()), contrastive_loss(img, txt, scale, pos, -txt)
    assert far > base and close > far + 0.5


def test_paired_loss_asks_each_caption_to_rank_its_clean_image_above_its_fake():
    torch.manual_seed(0)
    txt = F.normalize(torch.randn(5, 16), dim=-1)
    near, far = F.normalize(txt + 0.1 * torch.randn(5, 16), dim=-1), F.normalize(torch.randn(5, 16), dim=-1)
    scale = torch.tensor(np.log(20.0))
    right, wrong = paired_loss(txt, near, far, scale), paired_loss(txt, far, near, scale)
    assert right < 0.1 < 2.0 < wrong
    assert torch.allclose(paired_loss(txt, near, near, scale), torch.tensor(np.log(2.0), dtype=torch.float32))
    fake = far.clone().requires_grad_(True)
    paired_loss(txt, near, fake, scale).backward()
    assert ((fake.grad * txt).sum(1) > 0).all()  # descending the loss moves each fake away from its caption


@pytest.mark.slow
@pytest.mark.parametrize("gen_steps,pair_weight", [(1, 0.0), (2, 1.0)])  # stage 3, stage 4
def test_stages_three_and_four_write_weights_the_real_loader_reads(tmp_path, monkeypatch, gen_steps, pair_weight):
    # the stage's code at a smaller scale (the figures' sizes are no part of it): a pool of 8 latents, not 32, and
    # the zero-shot figure on 200 held-out scenes, not 600 (the shipped CLIP scores ~0.99 on either)
    monkeypatch.setattr(clip_train, "GeneratorPool", functools.partial(GeneratorPool, size=8))
    monkeypatch.setattr(clip_train, "zero_shot", functools.partial(clip_train.zero_shot, n=200))
    monkeypatch.setattr(clip_train, "prefers_clean", functools.partial(clip_train.prefers_clean, n=40))
    for name in ("vqgan.yaml", "vqgan.safetensors", "clip.json", "clip.safetensors"):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    before = (tmp_path / "clip.safetensors").read_bytes()
    figures = _train(tmp_path, 0, 2, 8, 1e-4, 0.2, 0.1, 0.15, tmp_path / "clip.safetensors", adversarial=True,
                     gen_steps=gen_steps, pair_weight=pair_weight)
    assert figures["adversarial"] and figures["color"] > 0.9
    assert (tmp_path / "clip.safetensors").read_bytes() != before
    load_clip(str(tmp_path / "clip.json"), str(tmp_path / "clip.safetensors"))


def test_stage_three_without_the_vqgan_says_what_to_run(tmp_path):
    shutil.copy(WEIGHTS_DIR / "clip.safetensors", tmp_path / "clip.safetensors")
    with pytest.raises(VqclipError, match="python -m vqclip.mini.train vqgan --out"):
        _train(tmp_path, 0, 1, 8, 1e-4, 0.2, 0.1, 0.15, tmp_path / "clip.safetensors", adversarial=True)
