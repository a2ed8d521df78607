"""Generator negatives of `vqclip train clip --generated N` (vqclip.train.generated): the ranking loss against a
softplus written here and gradcheck, the per-latent Adam against torch's Adam, the pool's draws, starts, ages and
negatives, a CLIP that gets no gradient from the pool's step, the ranking step's gradient against one computed here,
a killed run that resumes to the weights of an unbroken one, and bad input as one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageColor

from vqclip.cli import main
from vqclip.mini import world
from vqclip.nets.clip import load_clip
from vqclip.nets.vqgan import load_vqgan
from vqclip.train import clip as T
from vqclip.train import data as D
from vqclip.train import generated as G


def test_the_ranking_loss_is_the_softplus_of_the_margin_and_its_gradient_checks():
    g = torch.Generator().manual_seed(0)
    text, real, fake = (F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=-1) for _ in range(3))
    scale = torch.tensor(7.0, dtype=torch.float64)
    want = F.softplus(scale * ((text * fake).sum(-1) - (text * real).sum(-1))).mean()
    assert torch.allclose(G.ranking_loss(text, real, fake, scale), want)
    # a caption that prefers its real image by far costs nothing; one that prefers the fake costs the margin
    assert G.ranking_loss(text[:1], text[:1], -text[:1], scale) < 1e-5
    assert G.ranking_loss(text[:1], -text[:1], text[:1], scale).item() == pytest.approx(2 * 7.0, abs=1e-5)
    args = tuple(x.clone().requires_grad_(True) for x in (text, real, fake, scale))
    assert torch.autograd.gradcheck(G.ranking_loss, args)


def test_the_latents_adam_is_torchs_adam_each_with_its_own_step_count():
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(2, 3, 2, 2, generator=g) for _ in range(5)]
    z0 = torch.randn(2, 3, 2, 2, generator=g)
    lo, hi = torch.full((1, 3, 1, 1), -9.0), torch.full((1, 3, 1, 1), 9.0)
    z, m, v, age = z0.clone(), torch.zeros_like(z0), torch.zeros_like(z0), torch.tensor([0, 2])
    for k, grad in enumerate(grads):
        if k == 2:  # latent 0 restarts here: new moments, its count from 0 (latent 1 counts on from 2)
            m[0], v[0], age[0], z[0] = 0.0, 0.0, 0, z0[0]
        age += 1
        z = G.latent_adam(z, grad, m, v, age, 0.1, lo, hi)
    for i, (first, count0) in enumerate(((2, 0), (0, 2))):
        p = torch.nn.Parameter(z0[i].clone())
        opt = torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8)
        opt.state[p] = {"step": torch.tensor(float(count0)), "exp_avg": torch.zeros_like(p),
                        "exp_avg_sq": torch.zeros_like(p)}
        for grad in grads[first:]:
            p.grad = grad[i].clone()
            opt.step()
        assert torch.allclose(z[i], p.detach(), rtol=1e-5, atol=1e-5)
    clamped = G.latent_adam(torch.zeros(1, 3, 1, 1), torch.full((1, 3, 1, 1), -1.0), torch.zeros(1, 3, 1, 1),
                            torch.zeros(1, 3, 1, 1), torch.tensor([1]), 5.0, lo / 9, hi / 9)
    assert torch.equal(clamped, hi / 9)  # a step past the codebook's range stops at its edge


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """8 mini scenes at 32 px with their captions (some name a background colour, some do not)."""
    folder = tmp_path_factory.mktemp("gpairs")
    rng = np.random.default_rng(3)
    out = []
    for i in range(8):
        sc = world.sample_scene(rng, size=32)
        Image.fromarray(world.render(sc, size=32)).save(folder / f"s{i}.png")
        cap = world.caption(sc, rng) if i % 2 else f"a shape {i}"
        (folder / f"s{i}.txt").write_text(cap)
        out.append(D.Pair(folder / f"s{i}.png", cap))
    return out


@pytest.fixture
def pool(tiny_vqgan, tiny_clip, pairs):
    """A pool of 4 latents of the tiny VQGAN (factor 4) at the tiny CLIP's 32 px, life 3, negatives from age 1."""
    clip = load_clip(str(tiny_clip[0]), str(tiny_clip[1]))
    vqgan = load_vqgan(*tiny_vqgan).eval().requires_grad_(False)
    return G.GeneratedPool(vqgan, clip, pairs, size=4, seed=5, life=3, min_age=1)


def test_the_pool_draws_its_pairs_from_the_seed_and_step_and_starts_flat(pool, pairs):
    want = np.random.default_rng(G.step_seed(5, 0, 1)).integers(len(pairs), size=4)
    assert pool.index.tolist() == want.tolist()
    assert pool.age.tolist() == [0, 0, 1, 2]  # staggered over the life of 3
    for i, caption in enumerate(pool.captions()):
        named = world.parse_caption(caption).background if " on " in caption else None
        rgb = [c / 255 for c in ImageColor.getrgb(named)] if named else [0.5] * 3  # CSS colours, as prompts mean them
        flat = torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, 32, 32)
        assert torch.equal(pool.z[i:i + 1], pool.vqgan.encode(flat))  # the caption's background, else grey
    assert pool.z.shape == (4, 8, 8, 8) and not pool.m.any() and not pool.v.any()


def test_a_step_moves_the_latents_not_the_clip_and_restarts_the_old_ones(pool):
    z0 = pool.z.clone()
    pool.step(0)
    assert all(p.grad is None for p in pool.clip.parameters())  # the pool's step leaves CLIP's gradients alone
    assert pool.age.tolist() == [1, 1, 2, 0]  # the latent of age 2 reached its life of 3 and restarted
    assert not torch.equal(pool.z[:3], z0[:3]) and pool.m[:3].abs().sum() > 0 and not pool.m[3].any()
    fake, index = pool.negatives()
    assert len(index) == 3 and torch.equal(index, pool.index[:3]) and fake.shape == (3, 3, 32, 32)
    assert 0 <= fake.min() and fake.max() <= 1


def test_the_pools_state_round_trips_and_its_steps_repeat(pool, tiny_vqgan, tiny_clip, pairs):
    pool.step(0)
    state = pool.state_dict()
    other = G.GeneratedPool(pool.vqgan, pool.clip, pairs, size=4, seed=5, life=3, min_age=1)
    other.load_state_dict(state)
    pool.step(1)
    other.step(1)  # the same augmentations and restarts: functions of the seed and the step
    assert all(torch.equal(a, b) for a, b in zip(pool.state_dict().values(), other.state_dict().values()))
    assert torch.equal(pool.negatives()[0], other.negatives()[0])


def test_the_ranking_step_backpropagates_the_ranking_loss_into_clip(pool):
    model = pool.clip.model.train().requires_grad_(True)
    distance, loss = T.ranking_step(pool, model, pool.clip.tokenizer, 0, 0.5, amp=False)
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    fake, index = pool.negatives()
    real = pool.real(index)
    enc = lambda x: F.normalize(model.encode_image((x - pool.clip.mean) / pool.clip.std), dim=-1)  # noqa: E731
    text = F.normalize(model.encode_text(pool.clip.tokenizer([pool.pairs[i].caption for i in index])), dim=-1)
    margin = (text * enc(fake)).sum(-1) - (text * enc(real)).sum(-1)
    want = 0.5 * F.softplus(model.logit_scale.exp().detach() * margin).mean()
    want.backward()
    assert loss == pytest.approx(want.item(), rel=1e-5) and distance > 0
    assert got.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    assert all(torch.allclose(got[n], p.grad, atol=1e-6) for n, p in model.named_parameters() if p.grad is not None)
    assert "logit_scale" not in got  # the temperature is the contrastive loss's


def test_the_grid_shows_the_real_images_over_the_pools_pictures(pool, tmp_path):
    pool.save_grid(tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()  # no pictures before the first step
    pool.step(0)
    pool.save_grid(tmp_path / "g.png", n=3)
    grid = torch.from_numpy(np.asarray(Image.open(tmp_path / "g.png"), np.float32) / 255).permute(2, 0, 1)
    assert grid.shape == (3, 64, 96)
    real, fake = pool.real(pool.index[:3]), pool.image[:3]
    assert torch.allclose(grid[:, :32, 32:64], real[1], atol=1 / 255) and torch.allclose(grid[:, 32:, 64:], fake[2],
                                                                                          atol=1 / 255)


def test_the_real_images_come_back_through_the_vqgan(pool, pairs):
    real = pool.real(torch.tensor([0, 3]))
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(pairs[i].image), np.float32) / 255).permute(2, 0, 1)
                     for i in (0, 3)])
    from vqclip.nets.lean import decode_latent
    assert torch.allclose(real, decode_latent(pool.vqgan, pool.vqgan.encode(x)).clamp(0, 1), atol=1e-5)


def test_a_killed_run_with_generated_negatives_resumes_to_the_same_weights(tmp_path):
    """`--from mini`: its VQGAN draws a pool of 2; stopped after step 3 (checkpoint at 2) and resumed."""
    imgs, caps, _ = world.make_dataset(12, seed=9)
    data = tmp_path / "d"
    data.mkdir()
    for i, (im, cap) in enumerate(zip(imgs, caps)):
        Image.fromarray(im).save(data / f"s{i:02d}.png")
        (data / f"s{i:02d}.txt").write_text(cap)
    cfg = lambda out: T.TrainConfig(data=str(data), source="mini", out=str(tmp_path / out), steps=4, batch=4,  # noqa
                                    lr=1e-4, warmup=1, val=0.0, checkpoint_every=2, log_every=4, generated=2,
                                    generated_life=3, amp=False)
    T.train_clip(cfg("whole"))
    grids = sorted(p.name for p in (tmp_path / "whole" / T.GENERATED_DIR).iterdir())
    assert grids == ["step_000002.png", "step_000004.png"]  # at each checkpoint
    grid = np.asarray(Image.open(tmp_path / "whole" / T.GENERATED_DIR / grids[-1]))
    assert grid.shape == (128, 128, 3)  # the pool's 2 real images (64 px) over its 2 pictures

    def stop(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.train_clip(cfg("broken"), on_step=stop)
    assert T.load_checkpoint(tmp_path / "broken")["pool"]["z"].shape[0] == 2
    T.train_clip(resume=tmp_path / "broken")
    a, b = (T.load_checkpoint(tmp_path / r) for r in ("whole", "broken"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["pool"][k], b["pool"][k]) for k in a["pool"])
    plain = T.TrainConfig(**{**cfg("plain").__dict__, "generated": 0})
    T.train_clip(plain)  # the pool changed the weights: without it they differ
    c = T.load_checkpoint(tmp_path / "plain")
    assert "pool" not in c and not all(torch.equal(a["model"][k], c["model"][k]) for k in a["model"])


def test_bad_generated_input_is_one_line_and_exit_2(tmp_path, pairs, capsys):
    data = str(pairs[0].image.parent)
    common = ["train", "clip", "--data", data, "--batch", "2", "--val", "0"]
    cases = [(["--from", "ViT-B-32/openai", "--generated", "2"], "--generated needs a VQGAN"),
             (["--from", "mini", "--generated", "-1"], "--generated must be at least 0"),
             (["--from", "mini", "--generated", "2", "--generated-life", "0"], "--generated-life at least 1"),
             (["--from", "mini", "--generated", "2", "--generated-weight", "0"], "--generated-weight above 0"),
             (["--from", "mini", "--generated", "2", "--devices", "cpu,cpu"], "--generated trains on one device")]
    for k, (extra, said) in enumerate(cases):
        out = tmp_path / f"r{k}"
        assert main([*common, *extra, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert said in err and len(err.splitlines()) == 1 and "Traceback" not in err
        assert not out.exists()  # nothing written


def test_the_pool_draws_under_bf16_autocast_as_on_cuda(tiny_vqgan, tiny_clip, pairs):
    """The decoder under bf16 (what --generated uses on CUDA), here on the CPU: the pictures stay close to fp32's."""
    clip = load_clip(str(tiny_clip[0]), str(tiny_clip[1]))
    vqgan = load_vqgan(*tiny_vqgan).eval().requires_grad_(False)
    pools = [G.GeneratedPool(vqgan, clip, pairs, size=2, seed=1, life=5, min_age=0, amp=amp)
             for amp in (None, torch.bfloat16)]
    for p in pools:
        p.step(0)
    fp32, bf16 = (p.negatives()[0] for p in pools)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert (bf16 - fp32).abs().mean() < 0.02 and not torch.equal(bf16, fp32)  # bf16 did run, and rounds a little


def test_a_clip_size_the_vqgans_grid_cannot_draw_is_one_line(tiny_vqgan, pairs):
    from types import SimpleNamespace

    from vqclip.errors import VqclipError

    vqgan = load_vqgan(*tiny_vqgan)  # factor 4
    with pytest.raises(VqclipError, match="input size 30 is not a multiple of the VQGAN's factor 4"):
        G.GeneratedPool(vqgan, SimpleNamespace(image_size=30), pairs, size=2, seed=0)
