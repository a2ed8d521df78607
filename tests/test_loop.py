"""The optimisation loop on tiny random models: it optimises, it is reproducible, its options do what they say."""

import logging

import pytest
import torch
import torch.nn.functional as F

from tiny import write_clip, write_vqgan
from vqclip.runs.callbacks import StopAfter
from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from runs import Run
from vqclip.nets.load import Models
from vqclip.runs.pipeline import generate
from vqclip.nets.clip import load_clip
from vqclip.nets.vqgan import load_vqgan
from vqclip.files.images import save_png
from vqclip.nets.quantize import nearest_codes, vector_quantize


def job(tiny_job, **over):
    return merge_layers([("tiny", tiny_job), ("test", {"prompt": "a red circle", "steps": 3, "seed": 1, **over})])


def similarity(clip, image, text):
    return (clip.embed_images(image) @ clip.encode_text([text]).T).item()


def test_optimisation_raises_clip_similarity(tiny_job, tiny_models):
    cfg = job(tiny_job, steps=20, cutouts={"n": 8}, optimizer={"lr": 0.3})
    first = []
    result = generate(cfg, tiny_models, [lambda e: first.append(e.image) if e.step == 0 else None])
    clip = tiny_models.clips[0][0]
    with torch.no_grad():
        before, after = similarity(clip, first[0], cfg.prompt), similarity(clip, result.image, cfg.prompt)
    assert after > before + 0.01
    assert result.losses[-1] < result.losses[0]


def test_same_seed_same_image_bit_exact(tiny_job, tiny_models):
    a = generate(job(tiny_job), tiny_models)
    b = generate(job(tiny_job), tiny_models)
    c = generate(job(tiny_job, seed=2), tiny_models)
    assert torch.equal(a.image, b.image) and a.seed == b.seed == 1
    assert not torch.equal(a.image, c.image)


def test_seed_is_drawn_and_recorded_when_unset(tiny_job, tiny_models):
    cfg = merge_layers([("tiny", tiny_job), ("t", {"prompt": "x", "steps": 1})])
    assert cfg.seed is None
    assert isinstance(generate(cfg, tiny_models).seed, int)


def test_seed_minus_one_draws_a_seed_that_repeats_the_run(tiny_job, tiny_models):
    """-1 means "random" as in other generators: a fresh seed each time, recorded, and it repeats the image."""
    a, b = (generate(job(tiny_job, seed=-1), tiny_models) for _ in range(2))
    assert a.seed != -1 and a.seed >= 0 and a.seed != b.seed
    assert torch.equal(generate(job(tiny_job, seed=a.seed), tiny_models).image, a.image)


def test_global_rng_is_not_disturbed(tiny_job, tiny_models):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate(job(tiny_job), tiny_models)
    assert torch.equal(torch.rand(3), expected)


def test_bf16_autocast_runs_on_cpu(tiny_job, tiny_models):
    dtypes = []
    visual = tiny_models.clips[0][0].model.visual
    handle = visual.conv1.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    try:
        result = generate(job(tiny_job, precision="bf16"), tiny_models)
    finally:
        handle.remove()
    assert torch.bfloat16 in dtypes
    assert result.image.dtype == torch.float32 and torch.isfinite(result.image).all()
    assert 0 <= result.image.min() and result.image.max() <= 1


def test_callback_can_stop_the_run(tiny_job, tiny_models):
    result = generate(job(tiny_job, steps=50), tiny_models, [StopAfter(2)])
    assert result.stopped and result.steps == 2 and len(result.losses) == 2


def test_init_image_and_init_weight(tiny_job, tiny_models, tmp_path):
    image = torch.zeros(1, 3, 32, 32)
    image[:, 0] = 1.0
    save_png(image, tmp_path / "red.png")
    cfg = job(tiny_job, init={"kind": "image", "image": str(tmp_path / "red.png"), "weight": 0.5})
    gen = Run(cfg, tiny_models, torch.device("cpu"), 1)
    expected = tiny_models.vqgan.encode(image)
    assert torch.equal(gen.z.detach(), expected)
    assert "init" in gen.step().losses


@pytest.mark.parametrize("kind", ["random", "pixels", "gradient", "flat", "background"])
def test_inits_give_codebook_latents(tiny_job, tiny_models, kind):
    gen = Run(job(tiny_job, init={"kind": kind}), tiny_models, torch.device("cpu"), 1)
    z = gen.z.detach()
    assert torch.equal(vector_quantize(z, tiny_models.vqgan.codebook), z)


def test_nearest_codes_ignore_autocast():
    """Under bf16 autocast the code search stays fp32: latents just off the midpoint of two codes keep their code."""
    torch.manual_seed(0)
    codebook = torch.randn(256, 64)
    a, b = codebook[torch.randint(0, 256, (2, 512))]
    z = (0.5 * (a + b) + 1e-3 * (b - a)).view(8, 8, 8, 64).movedim(-1, 1)
    fp32, snapped = nearest_codes(z, codebook), vector_quantize(z, codebook)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(nearest_codes(z, codebook), fp32)
        assert torch.equal(vector_quantize(z, codebook), snapped)


def test_image_prompt_only_and_negative(tiny_job, tiny_models, tmp_path):
    save_png(torch.rand(1, 3, 40, 40), tmp_path / "target.png")
    cfg = job(tiny_job, prompt="", image_prompts=[f"{tmp_path / 'target.png'}:2"], negative=["blurry"])
    gen = Run(cfg, tiny_models, torch.device("cpu"), 1)
    assert [p.weight for p in gen.prompts] == [-1.0, 2.0]
    assert gen.targets[0].shape == (2, 32)
    gen.step()


def test_nothing_to_aim_at(tiny_job, tiny_models):
    with pytest.raises(VqclipError, match="nothing to aim at"):
        Run(job(tiny_job, prompt="blurry:-1"), tiny_models, torch.device("cpu"), 1)


def test_several_clip_models_each_scored(tmp_path, tiny_job, tiny_vqgan):
    j1, w1 = write_clip(tmp_path / "a", seed=1)
    j2, w2 = write_clip(tmp_path / "b", seed=2, name="other")
    models = Models(load_vqgan(*tiny_vqgan), [(load_clip(str(j1), str(w1)), 1.0), (load_clip(str(j2), str(w2)), 0.5)])
    gen = Run(job(tiny_job), models, torch.device("cpu"), 1)
    assert gen.clip_weights == pytest.approx([2 / 3, 1 / 3])
    assert set(gen.step().losses) == {"clip:clip", "clip:other"}


def test_gumbel_vqgan_generates(tmp_path, tiny_job, tiny_clip):
    models = Models(load_vqgan(*write_vqgan(tmp_path, gumbel=True)), [(load_clip(*map(str, tiny_clip)), 1.0)])
    result = generate(job(tiny_job), models)
    assert result.image.shape == (1, 3, 32, 32)


def test_size_rounded_to_factor_with_notice(tiny_job, tiny_models, caplog):
    with caplog.at_level(logging.INFO, logger="vqclip"):
        gen = Run(job(tiny_job, size=[30, 45]), tiny_models, torch.device("cpu"), 1)
    assert (gen.width, gen.height) == (32, 44) and "rounded to 32x44" in caplog.text
    assert gen.decode().shape == (1, 3, 44, 32)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_schedules_decay(tiny_job, tiny_models, schedule):
    gen = Run(job(tiny_job, steps=10, optimizer={"lr": 0.2, "schedule": schedule}), tiny_models,
                     torch.device("cpu"), 1)
    assert gen.lr_at(0) == pytest.approx(0.2) and gen.lr_at(10) == pytest.approx(0.02)
    assert gen.lr_at(0) > gen.lr_at(5) > gen.lr_at(10)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_lr_schedules_are_torchs_schedulers(tiny_job, tiny_models, schedule):
    """cosine = CosineAnnealingLR down to lr * min_factor over `steps`; linear = LinearLR to the same floor."""
    steps, lr, floor = 12, 0.2, 0.25
    gen = Run(job(tiny_job, steps=steps, optimizer={"lr": lr, "schedule": schedule, "min_factor": floor}),
                     tiny_models, torch.device("cpu"), 1)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = {"cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * floor),
             "linear": lambda: torch.optim.lr_scheduler.LinearLR(opt, 1.0, floor, total_iters=steps),
             "constant": lambda: torch.optim.lr_scheduler.ConstantLR(opt, 1.0)}[schedule]()
    for step in range(steps + 1):
        assert gen.lr_at(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), step
        opt.step()
        sched.step()


def test_the_step_uses_the_scheduled_lr_and_keeps_z_in_the_codebooks_box(tiny_job, tiny_models):
    gen = Run(job(tiny_job, steps=4, optimizer={"name": "sgd", "lr": 1e4, "schedule": "linear"}), tiny_models,
                     torch.device("cpu"), 1)
    codebook = tiny_models.vqgan.codebook
    lo, hi = codebook.min(0).values.view(1, -1, 1, 1), codebook.max(0).values.view(1, -1, 1, 1)
    for step in range(3):
        gen.step()
        assert gen.optimizer.param_groups[0]["lr"] == pytest.approx(gen.lr_at(step))
        assert (gen.z >= lo).all() and (gen.z <= hi).all()
    at_bound = (gen.z == lo) | (gen.z == hi)
    assert at_bound.float().mean() > 0.2  # a huge step: the box clamp held many values


def test_the_init_term_is_the_notebooks_with_twice_its_weight(tiny_job, tiny_models):
    """vqclip's init.weight w adds w * MSE(z, z_init); the notebook adds init_weight * MSE / 2: w = init_weight / 2.
    Its gradient pulls z back towards where it started."""
    gen = Run(job(tiny_job, init={"weight": 0.3}), tiny_models, torch.device("cpu"), 1)
    with torch.no_grad():
        gen.z.add_(torch.randn(gen.z.shape, generator=torch.Generator().manual_seed(0)))
    z = gen.z.detach().clone()
    term = gen.losses(gen.decode())["init"]
    torch.testing.assert_close(term, F.mse_loss(z, gen.z_init) * 0.6 / 2)
    gen.z.grad = None
    term.backward()
    assert (gen.z.grad * (z - gen.z_init)).sum() > 0  # descent moves z towards z_init
    torch.testing.assert_close(gen.z.grad, 0.3 * 2 * (z - gen.z_init) / z.numel())


def test_micro_batches_give_the_one_pass_gradient_with_two_clips_and_starts(tmp_path, tiny_job, tiny_models):
    """Two CLIPs of unequal weight (their shares scale each injected gradient) and two starts (the loss is scaled by
    the number of starts): scoring the cutouts in chunks gives the gradient of one pass."""
    other = load_clip(*map(str, write_clip(tmp_path, seed=4)))
    models = Models(tiny_models.vqgan, [tiny_models.clips[0], (other, 0.4)])
    grads = []
    for micro in (0, 3):
        cfg = job(tiny_job, micro_batch=micro, cutouts={"n": 7}, precision="fp32")
        gen = Run(cfg, models, torch.device("cpu"), 1, starts=2)
        image = gen.decode()
        torch.manual_seed(0)  # Kornia draws its parameters from torch's RNG
        views = [gen.cutouts[32].draw(2, 32, 32, torch.Generator().manual_seed(k)) for k in range(2)]
        loss = torch.stack(list(gen.losses(image, views).values())).sum()
        (loss * 2).backward()
        grads.append((loss.item(), gen.z.grad.clone()))
    assert len(gen.clip_terms) == len(set(gen.clip_terms)) == 2  # both named 'clip': each term counts
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-4, atol=1e-7)


def test_a_cuda_device_that_is_not_there_is_one_line(monkeypatch):
    from vqclip.nets.device import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(VqclipError, match="'cuda:7' asked for but this machine has 1 CUDA device"):
        pick_device("cuda:7")  # before any run folder is made, not a CUDA error mid-run


def test_the_loss_is_the_weighted_sum_of_its_terms(tiny_job, tiny_models):
    """tv = tv_weight x the mean squared neighbour difference (torch.diff); init = init.weight x MSE(z, z_init); the
    step minimises their sum with the CLIP term."""
    gen = Run(job(tiny_job, tv_weight=0.7, init={"weight": 0.2}), tiny_models, torch.device("cpu"), 1)
    with torch.no_grad():
        gen.z.add_(0.3)
    image = gen.decode()
    parts = gen.losses(image)
    diff = torch.diff(image, dim=-1).pow(2).mean() + torch.diff(image, dim=-2).pow(2).mean()
    torch.testing.assert_close(parts["tv"], 0.7 * diff)
    torch.testing.assert_close(parts["init"], 0.2 * (gen.z - gen.z_init).pow(2).mean())
    assert set(parts) == {"clip:clip", "tv", "init"}
    event = gen.step()
    assert event.loss == pytest.approx(sum(event.losses.values()), rel=1e-6)


def test_a_prompt_stopped_above_every_distance_adds_its_loss_but_no_gradient(tiny_job, tiny_models):
    """A stop of 5 is above every spherical distance (at most pi^2/2): the stopped prompt's term is in the loss, its
    gradient is not, so z's gradient is that of the other prompt alone; without the stop the gradient differs. Also
    through the micro-batched loss and a story keyframe."""
    def grad(micro=0, **over):
        gen = Run(job(tiny_job, precision="fp32", micro_batch=micro, cutouts={"n": 5}, **over), tiny_models,
                  torch.device("cpu"), 1)
        image = gen.decode()
        torch.manual_seed(0)
        views = [gen.cutouts[32].draw(1, 32, 32, torch.Generator().manual_seed(3))]
        loss = torch.stack(list(gen.losses(image, views).values())).sum()
        loss.backward()
        return loss.item(), gen.z.grad.clone()

    alone, g_alone = grad(prompt="a red circle")
    stopped, g_stopped = grad(prompt="a red circle|a blue square:1:5")
    _, g_pushed = grad(prompt="a red circle|a blue square:-1:5")  # a pushed prompt's signed distance -d < 5 too
    _, g_low = grad(prompt="a red circle|a blue square:-1:-5")  # -d > -5 everywhere: never cut
    _, g_free = grad(prompt="a red circle|a blue square:-1")
    plain, g_plain = grad(prompt="a red circle|a blue square")
    story, g_story = grad(prompt="", story=[{"at": 0, "prompt": "a red circle|a blue square:1:5"}])
    chunked, g_chunked = grad(micro=2, prompt="a red circle|a blue square:1:5")
    torch.testing.assert_close(g_stopped, g_alone, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(g_story, g_alone, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(g_chunked, g_alone, rtol=1e-4, atol=1e-7)
    assert stopped == pytest.approx(plain, rel=1e-6) == pytest.approx(story, rel=1e-6)  # the value is kept
    assert chunked == pytest.approx(plain, rel=1e-5)
    assert stopped > alone + 1e-3
    assert not torch.allclose(g_plain, g_alone, rtol=1e-3, atol=1e-7)
    torch.testing.assert_close(g_pushed, g_alone, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(g_low, g_free, rtol=1e-5, atol=1e-9)
    assert not torch.allclose(g_free, g_alone, rtol=1e-3, atol=1e-7)
