"""The mini recipe (`python -m vqclip.mini.train`) uses `vqclip train`'s code where the two do the same thing: the
warmup + cosine schedule, the AdamW parameter groups, the unit features and the ETA. Each is checked here against
the mini recipe's own rule, written in the test, to the bit where the shipped weights depend on it."""

from __future__ import annotations

import itertools
import logging
import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIP

from vqclip.mini.train import clip as C
from vqclip.mini.train import vqgan as V
from vqclip.train import clip as T

TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


def clock() -> SimpleNamespace:
    """A `time` module whose clock moves 10 s at each reading: each step of a run takes 10 s."""
    return SimpleNamespace(time=itertools.count(0, 10).__next__)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return CLIP(**TINY)


def test_the_shared_schedule_is_open_clips_warmup_then_cosine():
    """open_clip's cosine_lr: (step + 1) / warmup during the warmup, then 0.5 (1 + cos(pi e / es)) after it."""
    warmup, steps = 4, 20
    for step in range(steps + 1):
        e, es = step - warmup, steps - warmup
        want = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * e / es))
        assert T.lr_factor(step, warmup, steps) == want, step
    assert T.lr_factor(3, 4, 20) == 1.0 and T.lr_factor(4, 4, 20) == 1.0 and T.lr_factor(20, 4, 20) == 0.0
    assert T.lr_factor(0, 0, 20) == 1.0 and T.lr_factor(10, 0, 20) == 0.5 * (1 + math.cos(math.pi * 10 / 20))


def test_the_mini_clip_schedule_warms_up_over_5_percent_of_a_cosine_over_every_step(tiny_model):
    lr, steps = 1e-3, 60  # warmup: 60 // 20 = 3 steps
    opt, sched = C.optimizer(tiny_model, lr, steps)
    want = lambda s: lr * min(1.0, (s + 1) / 3) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))  # noqa: E731
    assert [g["lr"] for g in opt.param_groups] == [lr / 3] * 2  # the first step's
    for s in (0, 1, 2, 3, 30, 59, 60):  # in the warmup, its end, after it, halfway, the last step, after it
        assert lr * sched.lr_lambdas[0](s) == want(s), s
    assert want(2) < lr and want(59) > 0 and want(60) == 0  # the cosine runs from step 0, not from the warmup's end
    _, short = C.optimizer(tiny_model, lr, 10)  # under 20 steps: a one-step warmup
    assert short.lr_lambdas[0](0) == 1.0


def test_the_mini_vqgan_schedule_warms_up_over_100_steps_of_a_cosine_to_a_tenth():
    steps = 400
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = V.schedule(opt, steps)
    want = lambda s: min(1.0, (s + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))  # noqa
    for s in (0, 98, 99, 100, 200, 399, 400):
        assert sched.lr_lambdas[0](s) == want(s), s
    assert sched.lr_lambdas[0](400) == pytest.approx(0.1, abs=1e-15) and sched.lr_lambdas[0](0) == pytest.approx(0.01)


def test_the_mini_clip_decays_the_matrices_but_not_the_embeddings(tiny_model):
    opt, _ = C.optimizer(tiny_model, 1e-3, 100)
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    by_decay = {g["weight_decay"]: ids(g) for g in opt.param_groups}
    named = dict(tiny_model.named_parameters())
    decayed = {id(p) for n, p in named.items() if p.dim() >= 2 and "embedding" not in n}
    assert set(by_decay) == {0.0, 0.1} and by_decay[0.1] == decayed
    assert by_decay[0.0] == {id(p) for p in named.values()} - decayed
    spared = ("token_embedding.weight", "positional_embedding", "visual.positional_embedding", "logit_scale",
              "ln_final.weight", "visual.conv1.weight")
    assert all(id(named[n]) in by_decay[0.0] for n in spared[:-1]) and id(named[spared[-1]]) in by_decay[0.1]
    assert all(g["betas"] == (0.9, 0.98) and g["eps"] == 1e-6 for g in opt.param_groups)


def test_the_shared_features_without_amp_are_the_recipes_fp32_unit_features(tiny_model):
    torch.manual_seed(1)
    x, tokens = torch.rand(3, 3, 64, 64), torch.randint(1, 400, (3, 16))
    img, txt = T.features(tiny_model, x, tokens, amp=False)
    assert torch.equal(img, F.normalize(tiny_model.encode_image(x), dim=-1))
    assert torch.equal(txt, F.normalize(tiny_model.encode_text(tokens), dim=-1))
    (img * txt).sum().backward()
    assert tiny_model.visual.conv1.weight.grad.abs().sum() > 0 and tiny_model.token_embedding.weight.grad.abs().sum() > 0
    tiny_model.zero_grad(set_to_none=True)


def test_a_mini_clip_stage_trains_in_fp32_with_an_eta(tmp_path, monkeypatch, caplog):
    seen = []
    build = C.training_model

    def spied(weights=None, config=None):
        model, tok = build(weights, config)
        model.visual.transformer.resblocks[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        return model, tok

    monkeypatch.setattr(C, "training_model", spied)
    monkeypatch.setattr(C, "zero_shot", lambda model, tok: {})  # 600 held-out scenes: not this test's business
    monkeypatch.setattr(C, "prefers_clean", lambda model, tok: 0.0)
    monkeypatch.setattr(C, "time", clock())
    with caplog.at_level(logging.INFO, logger="vqclip"):
        C._train(tmp_path, 0, 2, 4, 1e-3, 0.3, 0.0, 0.0, None, config=TINY, name="tiny")
    assert seen == [torch.float32] * 2
    assert re.search(r"clip step 1/2 loss [\d.]+ scale [\d.]+ +10s +ETA 10s\n", caplog.text)  # one step to go
    assert re.search(r"clip step 2/2 loss [\d.]+ scale [\d.]+ +20s +ETA 0s\n", caplog.text)
    assert (tmp_path / "tiny.safetensors").is_file() and (tmp_path / "tiny.json").is_file()


@pytest.mark.parametrize("native", [True, False])
def test_the_generator_stage_runs_the_vqgan_in_bf16_only_on_a_cpu_that_does_it_in_hardware(tmp_path, monkeypatch,
                                                                                         native):
    """Stage 3's pool: bf16 autocast where the CPU does bf16 in hardware, fp32 where it would be emulated (slower)."""
    calls = []
    monkeypatch.setattr("vqclip.nets.device.cpu_native_bf16", lambda: native)
    monkeypatch.setattr(C, "_load_vqgan", lambda out_dir: None)
    monkeypatch.setattr(C, "_train", lambda *a, **kw: calls.append(kw) or {})
    (tmp_path / "clip.safetensors").write_bytes(b"")
    C.train_clip(tmp_path, stage="3")
    assert [kw.get("adversarial") for kw in calls] == [True]
    assert calls[0]["amp"] == (torch.bfloat16 if native else None)


def test_a_mini_vqgan_run_says_its_progress_with_an_eta(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(V, "held_out_psnr", lambda model: 0.0)  # 256 held-out scenes: not this test's business
    monkeypatch.setattr(V, "time", clock())
    with caplog.at_level(logging.INFO, logger="vqclip"):
        V.train_vqgan(tmp_path, steps=3, batch_size=1, warmup=1, restart_every=1)
    assert re.search(r"vqgan step 1/3 loss [\d.]+ psnr [\d.]+ +10s +ETA 20s\n", caplog.text)  # two steps to go
    assert re.search(r"vqgan step 3/3 loss [\d.]+ psnr [\d.]+ +20s +ETA 0s\n", caplog.text)
