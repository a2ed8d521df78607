"""`vqclip train vqgan` (vqclip.train.vqgan): the objective against taming's own VQLPIPSWithDiscriminator (generator
and discriminator passes, the adaptive weight), bf16 autocast on CPU, frozen parts, seeded crops, a killed run
resumed to the same weights, grids and checkpoints, and bad input. A tiny random VQGAN, a few 32x32 steps."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import taming.modules.losses.vqperceptual as taming_loss
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.models.presets import get_preset
from vqclip.models.resolve import resolve_preset
from vqclip.nets.vqgan import load_vqgan
from vqclip.train import vqgan as V


@pytest.fixture(scope="module")
def images_folder(tmp_path_factory):
    """10 random images of several sizes (one under the crop size), and a text file the reader ignores."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    for i in range(10):
        h, w = 28 + 4 * i, 48 - 2 * i
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _cfg(tiny_vqgan, folder, out, **kw):
    kw = {"steps": 4, "batch": 2, "size": 32, "lr": 1e-3, "disc_start": 1, "disc_ndf": 8, "val": 0.2,
          "checkpoint_every": 2, "grid_every": 2, "log_every": 3, **kw}
    return V.VqganTrainConfig(data=str(folder), source=f"{tiny_vqgan[0]}+{tiny_vqgan[1]}", out=str(out), **kw)


@pytest.fixture(scope="module")
def runs(tiny_vqgan, images_folder, tmp_path_factory):
    """An unbroken 4-step run (discriminator from step 1), and the same run stopped by Ctrl-C after step 3 and
    resumed."""
    base = tmp_path_factory.mktemp("vqruns")
    metrics = V.train_vqgan(_cfg(tiny_vqgan, images_folder, base / "whole"))

    def stop(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        V.train_vqgan(_cfg(tiny_vqgan, images_folder, base / "broken"), on_step=stop)
    kept = V.load_checkpoint(base / "broken")["step"]
    resumed = V.train_vqgan(resume=base / "broken")
    return {"whole": base / "whole", "broken": base / "broken", "metrics": metrics, "resumed": resumed, "kept": kept}


class _Perceptual(torch.nn.Module):
    """A differentiable stand-in for LPIPS ([B,1,1,1] per image), so taming's loss can be built without downloads."""

    def forward(self, a, b):
        return ((a - b) ** 2).mean(dim=(1, 2, 3), keepdim=True).sqrt()


@pytest.fixture()
def taming_objective(monkeypatch):
    """taming's VQLPIPSWithDiscriminator with the stand-in perceptual network."""
    monkeypatch.setattr(taming_loss, "LPIPS", _Perceptual)
    return lambda **kw: taming_loss.VQLPIPSWithDiscriminator(**kw)


@pytest.mark.parametrize("step", [2, 3])  # one before disc_start, and disc_start
def test_the_generator_objective_is_taming_vqlpips_with_discriminator(tiny_vqgan, taming_objective, step, capsys):
    cfg = V.VqganTrainConfig(data="", source="", out="", disc_start=3, disc_weight=0.8, codebook_weight=0.7,
                             perceptual_weight=0.5)
    ref = taming_objective(disc_start=3, disc_weight=0.8, codebook_weight=0.7, perceptual_weight=0.5).train()
    model = load_vqgan(*tiny_vqgan).train().requires_grad_(True)
    disc = ref.discriminator
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32)
    ours, rec, figures = V.generator_loss(model, disc, _Perceptual(), x, step, cfg)
    rec_again, qloss = V.reconstruct(model, x)
    theirs, log = ref(qloss, x * 2 - 1, rec_again, 0, step, last_layer=model.decoder.conv_out.weight)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert torch.allclose(rec, rec_again.detach())
    if step >= 3:  # the GAN term counts from disc_start on, with taming's adaptive weight
        assert figures["d_weight"] == pytest.approx(log["train/d_weight"].item(), rel=1e-5)
        assert log["train/d_weight"].item() > 0
    else:
        assert "d_weight" not in figures and log["train/disc_factor"].item() == 0


def test_the_discriminator_step_is_tamings_hinge_loss(tiny_vqgan, taming_objective):
    ref = taming_objective(disc_start=0).train()
    model = load_vqgan(*tiny_vqgan)
    x = torch.rand(2, 3, 32, 32)
    rec, _ = V.reconstruct(model, x)
    theirs, _ = ref(torch.zeros(()), x * 2 - 1, rec, 1, 5)
    ours = V.discriminator_loss(ref.discriminator, x, rec)
    assert torch.allclose(ours, theirs) and ours.item() != pytest.approx(
        taming_loss.hinge_d_loss(ref.discriminator(rec), ref.discriminator(x * 2 - 1)).item())  # real and fake apart


def test_the_adaptive_weight_is_tamings_formula():
    torch.manual_seed(0)
    w = torch.randn(4, 3, requires_grad=True)
    out = torch.randn(5, 4) @ w
    nll, g = out.abs().mean(), -(out ** 3).mean()
    ref = taming_loss.VQLPIPSWithDiscriminator.calculate_adaptive_weight(SimpleNamespace(discriminator_weight=0.3),
                                                                          nll, g, last_layer=w)
    assert V.adaptive_weight(nll, g, w, 0.3).item() == pytest.approx(ref.item(), rel=1e-6)
    huge = V.adaptive_weight(out.sum() * 1e9, out.sum() * 1e-9, w, 1.0)  # clamped at 1e4
    assert huge.item() == pytest.approx(1e4) and not huge.requires_grad


def test_bf16_autocast_runs_the_networks_in_bf16_on_cpu(tiny_vqgan):
    model = load_vqgan(*tiny_vqgan)
    seen = []
    hook = model.encoder.conv_in.register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.rand(2, 3, 32, 32)
    rec16, q16 = V.reconstruct(model, x, amp=True)
    rec32, _ = V.reconstruct(model, x, amp=False)
    hook.remove()
    assert [o.dtype for o in seen] == [torch.bfloat16, torch.float32]
    assert torch.allclose(seen[0].float(), seen[1], atol=0.03, rtol=0.02)  # the same convolution, in bf16
    assert rec16.dtype == q16.dtype == torch.float32 and not torch.equal(rec16, rec32)


@pytest.mark.parametrize("freeze, kept, moved", [("encoder", ("encoder.", "quant_conv."), "quantize."),
                                                 ("codebook", ("quantize.",), "encoder.")])
def test_a_frozen_part_keeps_its_weights(tiny_vqgan, images_folder, tmp_path, freeze, kept, moved):
    V.train_vqgan(_cfg(tiny_vqgan, images_folder, tmp_path / "r", steps=2, disc_start=9, val=0.0, freeze=freeze))
    start = load_vqgan(*tiny_vqgan).state_dict()
    after = V.load_checkpoint(tmp_path / "r")["model"]
    assert all(torch.equal(start[k], after[k]) for k in start if k.startswith(kept))
    assert not all(torch.equal(start[k], after[k]) for k in start if k.startswith(moved))
    assert not torch.equal(start["decoder.conv_out.weight"], after["decoder.conv_out.weight"])


def test_crops_are_seeded_windows_of_the_image(images_folder):
    tf = V.crop_transform(32, train=True)
    im = Image.open(images_folder / "im5.png").convert("RGB")  # 38 wide, 48 high
    arr = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)

    def crop(seed):
        torch.manual_seed(seed)
        return tf(im)

    windows = {(y, x) for y in range(arr.shape[1] - 31) for x in range(arr.shape[2] - 31)}
    found = [[w for w in windows if torch.equal(arr[:, w[0]:w[0] + 32, w[1]:w[1] + 32], crop(s))] for s in range(4)]
    assert all(len(f) == 1 for f in found) and len({f[0] for f in found}) > 1
    assert torch.equal(crop(4), crop(4))
    small = Image.open(images_folder / "im9.png").convert("RGB")  # 30 px wide: raised to 32
    assert small.size[0] < 32 and tf(small).shape == (3, 32, 32)
    centre = V.crop_transform(32, train=False)(im)
    assert torch.equal(centre, arr[:, 8:40, 3:35])


def test_a_killed_run_resumes_to_the_weights_of_an_unbroken_one(runs, tiny_vqgan):
    assert runs["kept"] == 2  # Ctrl-C after step 3 keeps the checkpoint of step 2
    whole, resumed = (V.load_checkpoint(runs[k]) for k in ("whole", "broken"))
    assert whole["step"] == resumed["step"] == 4
    for part in ("model", "disc"):
        assert all(torch.equal(whole[part][k], resumed[part][k]) for k in whole[part])
    start = load_vqgan(*tiny_vqgan).state_dict()
    assert not torch.equal(whole["model"]["decoder.conv_out.weight"], start["decoder.conv_out.weight"])
    assert runs["resumed"]["before"] == runs["metrics"]["before"]


def test_the_run_folder_holds_split_grids_and_metrics(runs):
    run = runs["whole"]
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) == 8 and len(split["val"]) == 2
    grids = sorted(p.name for p in (run / "grids").iterdir())
    assert grids == ["step_000002.png", "step_000004.png"]
    with Image.open(run / "grids" / grids[-1]) as im:
        assert im.size == (2 * 32, 2 * 32)  # the 2 held-out images over their reconstructions
    m = runs["metrics"]
    assert 0 < m["before"]["l1"] < 1 and 0 < m["after"]["l1"] < 1 and m["perceptual"] is False
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left
    with pytest.raises(VqclipError, match="already holds a training run"):
        V.train_vqgan(V.read_config(run))


def test_without_lpips_weights_it_says_so_in_one_line(runs, caplog, tiny_vqgan, images_folder, tmp_path):
    with caplog.at_level(logging.WARNING, logger="vqclip"):
        V.train_vqgan(_cfg(tiny_vqgan, images_folder, tmp_path / "r", steps=1, val=0.0), home_dir=tmp_path / "home")
    lines = [r.getMessage() for r in caplog.records if "LPIPS" in r.getMessage()]
    assert len(lines) == 1 and "without the perceptual term" in lines[0] and "\n" not in lines[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path, images_folder, tiny_vqgan, capsys):
    empty, texts = tmp_path / "empty", tmp_path / "texts"
    empty.mkdir()
    texts.mkdir()
    (texts / "a.txt").write_text("x")
    src = f"{tiny_vqgan[0]}+{tiny_vqgan[1]}"
    out = tmp_path / "r"
    cases = [(["--data", str(empty), "--from", src], "the folder is empty"),
             (["--data", str(texts), "--from", src], "none of its 1 files is an image"),
             (["--data", str(images_folder), "--from", str(tmp_path / "absent")], "no such preset, preset folder"),
             (["--data", str(empty), "--from", str(tmp_path / "absent")], "no such preset"),  # said before the data
             (["--data", str(empty), "--from", f"{tiny_vqgan[0]}+{tmp_path / 'x.ckpt'}"], "is not a file"),
             (["--data", str(images_folder), "--from", f"{tiny_vqgan[0]}+{tmp_path / 'x.ckpt'}"], "is not a file"),
             (["--data", str(images_folder), "--from", src, "--batch", "10"], "--batch 10 is larger than the 9"),
             (["--data", str(images_folder), "--from", src, "--size", "34"], "downsamples by 4; give a multiple of 4"),
             (["--data", str(images_folder), "--from", src, "--size", "28"], "crops of at least 32 px")]
    for args, words in cases:
        assert main(["train", "vqgan", *args, "--out", str(out), "--val", "0.1"]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
        assert not out.exists()  # nothing half-made
    assert main(["train", "vqgan", "--data", str(images_folder), "--from", src, "--out", str(out), "--size", "32",
                 "--batch", "9", "--steps", "1", "--disc-start", "5", "--val", "0.1", "--quiet"]) == 0  # the limit
    assert main(["train", "vqgan", "--resume", str(tmp_path)]) == 2
    assert "no readable train.json" in capsys.readouterr().err


def test_the_exported_preset_is_the_trained_vqgan_and_generate_uses_it(runs, tiny_args, tmp_path, capsys):
    folder = runs["whole"] / "vqgan"
    trained = V.load_checkpoint(runs["whole"])["model"]
    exported = load_vqgan(folder / "vqgan.yaml", folder / "vqgan.safetensors").state_dict()
    assert exported.keys() == trained.keys() and all(torch.equal(exported[k], trained[k]) for k in trained)
    preset = get_preset(str(folder))
    assert preset.vqgan_checkpoint.sha256 == hashlib.sha256((folder / "vqgan.safetensors").read_bytes()).hexdigest()
    resolved = resolve_preset(str(folder), download=False, fetch_clip_weights=False)
    assert (resolved.vqgan_config, resolved.vqgan_checkpoint) == (folder / "vqgan.yaml", folder / "vqgan.safetensors")
    clip = tiny_args[tiny_args.index("--clip-model"):tiny_args.index("--clip-model") + 4]
    common = ["generate", "a red circle", *clip, "--steps", "2", "--size", "32", "32", "--cutn", "2", "--quiet"]
    assert main([*common, "--model", str(folder), "--out", str(tmp_path / "gen")]) == 0
    assert (tmp_path / "gen" / "final.png").is_file()
    assert yaml.safe_load((tmp_path / "gen" / "job.yaml").read_text())["model"] == str(folder)
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    data = bytearray((changed / "vqgan.safetensors").read_bytes())
    data[-1] ^= 1
    (changed / "vqgan.safetensors").write_bytes(bytes(data))
    capsys.readouterr()
    assert main([*common, "--model", str(changed), "--out", str(tmp_path / "gen2")]) == 2
    assert "sha256" in capsys.readouterr().err


def test_the_command_line_flags_reach_the_training(monkeypatch, capsys):
    seen = {}

    def fake(cfg=None, resume=None):
        seen["cfg"], seen["resume"] = cfg, resume
        return {"steps": 1, "images_per_s": 1.0, "before": {"l1": 0.5}, "after": {"l1": 0.25}}

    monkeypatch.setattr(V, "train_vqgan", fake)
    assert main(["train", "vqgan", "--data", "d", "--from", "mini", "--out", "o", "--amp", "--freeze", "codebook",
                 "--disc-start", "7", "--disc-weight", "0.3", "--disc-ndf", "16", "--codebook-weight", "0.6",
                 "--perceptual-weight", "0", "--size", "48", "--grid-every", "5", "--steps", "9", "--quiet"]) == 0
    cfg = seen["cfg"]
    assert (cfg.amp, cfg.freeze, cfg.disc_start, cfg.disc_weight, cfg.disc_ndf) == (True, "codebook", 7, 0.3, 16)
    assert (cfg.codebook_weight, cfg.perceptual_weight, cfg.size, cfg.grid_every, cfg.steps) == (0.6, 0, 48, 5, 9)
    assert "held-out L1 0.5000 -> 0.2500" in capsys.readouterr().out
    assert main(["train", "vqgan", "--resume", "somewhere"]) == 0 and str(seen["resume"]) == "somewhere"
    assert main(["train", "vqgan", "--data", "d", "--out", "o"]) == 2
    assert "--from missing" in capsys.readouterr().err
