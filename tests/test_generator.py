"""The optimisation loop on tiny random models: it optimises, it is reproducible, its options do what they say."""

import logging

import pytest
import torch

from tiny import write_clip, write_vqgan
from vqclip.callbacks import StopAfter
from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.generator import Generation, Models, generate
from vqclip.models import load_clip, load_vqgan
from vqclip.outputs import save_png
from vqclip.quantize import nearest_codes, vector_quantize


def job(tiny_job, **over):
    return merge_layers([("tiny", tiny_job), ("test", {"prompt": "a red circle", "steps": 3, "seed": 1, **over})])


def similarity(clip, image, text):
    return (clip.encode_image(clip.prepare(image)) @ clip.encode_text([text]).T).item()


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
    gen = Generation(cfg, tiny_models, torch.device("cpu"), 1)
    expected = tiny_models.vqgan.encode(image)
    assert torch.equal(gen.z.detach(), expected)
    assert "init" in gen.step().losses


@pytest.mark.parametrize("kind", ["random", "pixels", "gradient", "flat", "background"])
def test_inits_give_codebook_latents(tiny_job, tiny_models, kind):
    gen = Generation(job(tiny_job, init={"kind": kind}), tiny_models, torch.device("cpu"), 1)
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
    gen = Generation(cfg, tiny_models, torch.device("cpu"), 1)
    assert [p.weight for p in gen.prompts] == [-1.0, 2.0]
    assert gen.targets[0].shape == (2, 32)
    gen.step()


def test_nothing_to_aim_at(tiny_job, tiny_models):
    with pytest.raises(VqclipError, match="nothing to aim at"):
        Generation(job(tiny_job, prompt="blurry:-1"), tiny_models, torch.device("cpu"), 1)


def test_several_clip_models_each_scored(tmp_path, tiny_job, tiny_vqgan):
    j1, w1 = write_clip(tmp_path / "a", seed=1)
    j2, w2 = write_clip(tmp_path / "b", seed=2, name="other")
    models = Models(load_vqgan(*tiny_vqgan), [(load_clip(str(j1), str(w1)), 1.0), (load_clip(str(j2), str(w2)), 0.5)])
    gen = Generation(job(tiny_job), models, torch.device("cpu"), 1)
    assert gen.clip_weights == pytest.approx([2 / 3, 1 / 3])
    assert set(gen.step().losses) == {"clip:clip", "clip:other"}


def test_gumbel_vqgan_generates(tmp_path, tiny_job, tiny_clip):
    models = Models(load_vqgan(*write_vqgan(tmp_path, gumbel=True)), [(load_clip(*map(str, tiny_clip)), 1.0)])
    result = generate(job(tiny_job), models)
    assert result.image.shape == (1, 3, 32, 32)


def test_size_rounded_to_factor_with_notice(tiny_job, tiny_models, caplog):
    with caplog.at_level(logging.INFO, logger="vqclip"):
        gen = Generation(job(tiny_job, size=[30, 45]), tiny_models, torch.device("cpu"), 1)
    assert (gen.width, gen.height) == (32, 44) and "rounded to 32x44" in caplog.text
    assert gen.decode().shape == (1, 3, 44, 32)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_schedules_decay(tiny_job, tiny_models, schedule):
    gen = Generation(job(tiny_job, steps=10, optimizer={"lr": 0.2, "schedule": schedule}), tiny_models,
                     torch.device("cpu"), 1)
    assert gen.lr_at(0) == pytest.approx(0.2) and gen.lr_at(10) == pytest.approx(0.02)
    assert gen.lr_at(0) > gen.lr_at(5) > gen.lr_at(10)


def test_a_cuda_device_that_is_not_there_is_one_line(monkeypatch):
    from vqclip.generator import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(VqclipError, match="'cuda:7' asked for but this machine has 1 CUDA device"):
        pick_device("cuda:7")  # before any run folder is made, not a CUDA error mid-run
