"""`vqclip train clip` (vqclip.train.clip, .export): open_clip's loss against a plain symmetric cross-entropy, exact
gradient accumulation, bf16 autocast on CPU, the schedule against open_clip's, locked towers, a killed run resumed to
the same weights, and the exported CLIP read back by the CLIP tools. Tiny random CLIPs, a few steps."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from open_clip.model import CLIP
from PIL import Image
from safetensors.torch import load_file, save_file

from tests.tiny import CLIP_CFG
from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.mini import world
from vqclip.nets.clip import load_clip
from vqclip.train import clip as T
from vqclip.train.export import PRESET_NAME, WEIGHTS_NAME, paired_preset, preset_name, source_spec, verify_export


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    """A tiny random CLIP as an open_clip folder (open_clip_config.json + weights)."""
    folder = tmp_path_factory.mktemp("tinyclip")
    torch.manual_seed(0)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CFG}))
    save_file(CLIP(**CLIP_CFG).state_dict(), str(folder / "open_clip_model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def pairs_folder(tmp_path_factory):
    """24 mini-world scenes with their captions beside them."""
    folder = tmp_path_factory.mktemp("pairs")
    imgs, caps, _ = world.make_dataset(24, seed=5)
    for i, (im, cap) in enumerate(zip(imgs, caps)):
        Image.fromarray(im).save(folder / f"s{i:02d}.png")
        (folder / f"s{i:02d}.txt").write_text(cap)
    return folder


def _cfg(tiny_source, pairs_folder, out, **kw):
    kw = {"steps": 6, "batch": 4, "lr": 1e-3, "warmup": 2, "val": 0.25, "checkpoint_every": 2, "log_every": 3, **kw}
    return T.TrainConfig(data=str(pairs_folder), source=str(tiny_source), out=str(out), **kw)


@pytest.fixture(scope="module")
def runs(tiny_source, pairs_folder, tmp_path_factory):
    """An unbroken 6-step run, and the same run stopped by Ctrl-C after step 3 and resumed."""
    base = tmp_path_factory.mktemp("runs")
    named = {"classes": ["circle", "square", "triangle"], "templates": ["a {}", "one {}"]}
    whole = _cfg(tiny_source, pairs_folder, base / "whole", **named)
    metrics = T.train_clip(whole)

    def stop(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    broken = _cfg(tiny_source, pairs_folder, base / "broken", **named)
    with pytest.raises(KeyboardInterrupt):
        T.train_clip(broken, on_step=stop)
    kept = T.load_checkpoint(base / "broken")["step"]
    resumed = T.train_clip(resume=base / "broken")
    return {"whole": base / "whole", "broken": base / "broken", "metrics": metrics, "resumed": resumed, "kept": kept,
            "source": tiny_source}


def _tiny_batch(n=4, seed=0):
    torch.manual_seed(seed)
    model = CLIP(**CLIP_CFG)
    images = torch.randn(n, 3, 32, 32)
    tokens = torch.randint(1, 400, (n, 16))
    return model, images, tokens


def test_one_step_loss_and_gradient_are_the_symmetric_cross_entropy():
    model, images, tokens = _tiny_batch()
    loss = T.contrastive_step(model, ClipLoss(), images, tokens)
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    img = F.normalize(model.encode_image(images), dim=-1)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.T
    labels = torch.arange(len(images))
    plain = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    plain.backward()
    assert torch.allclose(loss, plain.detach(), atol=1e-6)
    assert model.logit_scale.grad.abs() > 0  # the temperature learns
    for n, p in model.named_parameters():
        assert torch.allclose(got[n], p.grad, atol=1e-6, rtol=1e-4), n


def test_accumulated_micro_batches_give_the_whole_batch_gradient():
    model, images, tokens = _tiny_batch(6, seed=1)
    whole = T.contrastive_step(model, ClipLoss(), images, tokens, accum=1)
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    parts = T.contrastive_step(model, ClipLoss(), images, tokens, accum=3)
    assert torch.allclose(whole, parts, atol=1e-6)
    for n, p in model.named_parameters():
        assert torch.allclose(want[n], p.grad, atol=1e-6, rtol=1e-4), n


def test_mixed_precision_runs_the_towers_in_bf16_on_cpu():
    model, images, tokens = _tiny_batch(seed=2)
    seen = []
    hook = model.visual.transformer.resblocks[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    amp = T.contrastive_step(model, ClipLoss(), images, tokens, amp=True)
    hook.remove()
    model.zero_grad()
    full = T.contrastive_step(model, ClipLoss(), images, tokens, amp=False)
    assert seen == [torch.bfloat16]
    assert amp != full and abs(amp - full) < 0.05  # rounded, not another loss


def test_the_schedule_is_open_clips_warmup_and_cosine():
    cosine_lr = pytest.importorskip("open_clip_train.scheduler").cosine_lr
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ref = cosine_lr(opt, 0.1, 5, 20)
    for step in range(20):
        assert T.lr_factor(step, 5, 20) * 0.1 == pytest.approx(ref(step), abs=1e-12), step
    assert T.lr_factor(4, 5, 20) == 1.0 and T.lr_factor(5, 5, 20) == 1.0 and T.lr_factor(0, 0, 20) == 1.0


def test_weight_decay_spares_gains_biases_and_the_temperature_and_frozen_weights():
    model = CLIP(**CLIP_CFG)
    model.lock_image_tower()
    no_decay, decay = T.param_groups(model, 0.2)
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    assert id(model.logit_scale) in ids(no_decay) and id(model.ln_final.weight) in ids(no_decay)
    assert id(model.text_projection) in ids(decay) and id(model.token_embedding.weight) in ids(decay)
    assert not any(id(p) in ids(no_decay) | ids(decay) for p in model.visual.parameters())


@pytest.mark.parametrize("lock", ["lock_image", "lock_text"])
def test_a_locked_tower_keeps_its_weights(tiny_source, pairs_folder, tmp_path, lock, caplog):
    cfg = _cfg(tiny_source, pairs_folder, tmp_path / "run", **{lock: True})
    cfg.steps, cfg.val, cfg.log_every = 2, 0.0, 1
    with caplog.at_level(logging.INFO, logger="vqclip"):
        T.train_clip(cfg)
    assert re.search(r"step 2/2 loss [\d.]+ lr [\d.e+-]+ scale [\d.]+ +[\d.]+ img/s +ETA 0s", caplog.text)
    before = load_file(str(tiny_source / "open_clip_model.safetensors"))
    after = load_file(str(tmp_path / "run" / "clip" / WEIGHTS_NAME))
    frozen, free = ("visual.", "transformer.") if lock == "lock_image" else ("transformer.", "visual.")
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(frozen))
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith(free))


def test_a_killed_run_resumes_to_the_weights_of_an_unbroken_one(runs):
    assert runs["kept"] == 2  # Ctrl-C after step 3 keeps the checkpoint of step 2
    whole, resumed = (T.load_checkpoint(runs[k]) for k in ("whole", "broken"))
    assert whole["step"] == resumed["step"] == 6
    assert all(torch.equal(whole["model"][k], resumed["model"][k]) for k in whole["model"])
    start = load_file(str(runs["source"] / "open_clip_model.safetensors"))
    assert not torch.equal(whole["model"]["logit_scale"], start["logit_scale"])  # it trained
    assert runs["resumed"]["before"] == runs["metrics"]["before"]  # the resumed run keeps its before-figures


def test_the_run_folder_records_split_config_and_metrics(runs):
    run = runs["whole"]
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) == 18 and len(split["val"]) == 6
    assert json.loads((run / "train.json").read_text())["steps"] == 6
    metrics = json.loads((run / "metrics.json").read_text())
    for when in ("before", "after"):
        assert metrics[when]["pairs"] == 6 and 0 <= metrics[when]["image_to_text_r1"] <= 1
        assert metrics[when]["zero_shot"]["images"] == 6  # each caption names one shape: --classes reached it
    assert metrics["images_per_s"] > 0
    with pytest.raises(VqclipError, match="already holds a training run"):
        T.train_clip(T.read_config(run))


def test_the_exported_clip_is_the_trained_one_and_the_clip_tools_use_it(runs, pairs_folder, capsys):
    run = runs["whole"]
    trained = T.load_checkpoint(run)["model"]
    clip = load_clip(str(run / "clip"))
    assert all(torch.equal(v, trained[k]) for k, v in clip.model.state_dict().items())
    verify_export(run / "clip")
    labels = ["a red circle", "a blue square", "a green triangle"]
    images = sorted(pairs_folder.glob("*.png"))[:3]
    assert main(["classify", *map(str, images), "--clip-model", str(run / "clip"), "--labels", ",".join(labels),
                 "--templates", "{}", "--json", "--quiet"]) == 0
    got = json.loads(capsys.readouterr().out)
    model = CLIP(**CLIP_CFG)
    model.load_state_dict(trained)
    from open_clip.tokenizer import SimpleTokenizer
    from open_clip.transform import PreprocessCfg, image_transform_v2
    tf = image_transform_v2(PreprocessCfg(size=32), is_train=False)
    with torch.no_grad():
        img = F.normalize(model.encode_image(torch.stack([tf(Image.open(p).convert("RGB")) for p in images])), dim=-1)
        txt = F.normalize(model.encode_text(SimpleTokenizer(context_length=16)(labels)), dim=-1)
    want = [labels[i] for i in (img @ txt.T).argmax(1).tolist()]
    assert [r["label"] for r in got] == want


def test_the_export_is_a_preset_the_clip_tools_take_by_name(runs, pairs_folder, monkeypatch, capsys):
    from vqclip.models.presets import DEFAULT_PRESET, get_preset, load_presets_file

    folder = runs["whole"] / "clip"
    (name, preset), = load_presets_file(folder / PRESET_NAME).items()  # valid as any user's presets file
    default = get_preset(DEFAULT_PRESET)
    assert name == "whole" and preset.clip_model == str(folder.absolute())
    assert preset.clip_templates == ("a {}", "one {}") and preset.files == default.files
    images = [str(p) for p in sorted(pairs_folder.glob("*.png"))[:2]]
    labels = "a red circle,a blue square"
    assert main(["classify", *images, "--clip-model", str(folder), "--labels", labels, "--json", "--quiet",
                 "--templates", "{}"]) == 0
    by_folder = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("VQCLIP_PRESETS", str(folder / PRESET_NAME))
    assert main(["classify", *images, "--model", name, "--labels", labels, "--json", "--quiet", "--templates",
                 "{}"]) == 0
    assert json.loads(capsys.readouterr().out) == by_folder


def test_the_exported_config_is_the_architecture_trained(tiny_source):
    import open_clip

    from vqclip.train.export import model_config

    assert model_config(str(tiny_source), None) == CLIP_CFG
    openai = model_config("ViT-B-32", "openai")  # OpenAI's weights were trained with QuickGELU: the export says so
    assert openai.pop("quick_gelu") is True and openai == open_clip.get_model_config("ViT-B-32")
    assert "quick_gelu" not in model_config("ViT-B-32", "laion2b_s34b_b79k")


def test_the_preset_pairs_with_a_downloadable_presets_vqgan():
    from vqclip.models.presets import DEFAULT_PRESET

    assert paired_preset("imagenet-1024").name == "imagenet-1024"
    assert paired_preset("mini").name == DEFAULT_PRESET  # embedded: its VQGAN lives in the package
    assert paired_preset("ViT-B-32/openai").name == DEFAULT_PRESET
    assert preset_name("My Run #2") == "my-run-2" and preset_name("__") == "my-clip"


def test_a_changed_export_is_refused(runs, tmp_path):
    import shutil
    copy = shutil.copytree(runs["whole"] / "clip", tmp_path / "clip")
    weights = load_file(str(copy / WEIGHTS_NAME))
    weights["logit_scale"] = weights["logit_scale"] + 1
    save_file(weights, str(copy / WEIGHTS_NAME))
    with pytest.raises(VqclipError, match="sha256 is not the one"):
        verify_export(copy)
    assert (copy / PRESET_NAME).is_file()


def test_from_names_a_preset_a_folder_or_an_open_clip_model(tiny_source):
    assert source_spec("mini")[0].endswith("clip.json")
    assert source_spec(str(tiny_source)) == (str(tiny_source), None)
    assert source_spec("ViT-B-32/openai") == ("ViT-B-32", "openai")
    assert source_spec("RN50") == ("RN50", None)
    for bad in ("./absent", "NoSuchNet/openai", "no-such-thing"):
        with pytest.raises(VqclipError, match="no such preset, folder or file"):
            source_spec(bad)


def test_bad_input_is_one_line_and_exit_2(tmp_path, pairs_folder, tiny_source, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    images = tmp_path / "texts"
    images.mkdir()
    (images / "a.txt").write_text("x")
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("filepath,title\ns.png,x\n")
    cases = {str(empty): "empty", str(images): "none of its 1 files", str(csv_file): "no column 'caption'"}
    for data, words in cases.items():
        assert main(["train", "clip", "--data", data, "--from", str(tiny_source), "--out", str(tmp_path / "r")]) == 2
        assert words in capsys.readouterr().err
    common = ["train", "clip", "--data", str(pairs_folder), "--out", str(tmp_path / "r")]
    assert main([*common, "--from", str(tmp_path / "absent"), "--batch", "4"]) == 2
    assert "no such preset, folder or file" in capsys.readouterr().err
    for data in (empty, csv_file):  # a typo in --from is said before the data is read
        assert main(["train", "clip", "--data", str(data), "--from", "ViT-B-99/x", "--out", str(tmp_path / "r")]) == 2
        assert "--from ViT-B-99/x: no such preset" in capsys.readouterr().err
    assert main([*common, "--from", str(tiny_source), "--batch", "23"]) == 2  # 24 pairs, 2 held out: 22 train
    err = capsys.readouterr().err
    assert "--batch 23 is larger than the 22 training pairs" in err and err.count("\n") == 1
    assert main([*common, "--from", str(tiny_source), "--batch", "4", "--accum", "3"]) == 2
    assert "--batch 4 must split evenly into 1 process(es) x --accum 3" in capsys.readouterr().err
    assert main([*common, "--from", str(tiny_source), "--batch", "6", "--accum", "2", "--devices", "cpu,cpu"]) == 2
    assert "--batch 6 must split evenly into 2 process(es) x --accum 2" in capsys.readouterr().err  # before a spawn
    assert main(["train", "clip", "--resume", str(tmp_path)]) == 2
    assert not (tmp_path / "r").exists()  # nothing half-made


def test_ctrl_c_says_which_checkpoint_is_kept(tiny_source, pairs_folder, tmp_path, caplog):
    def stop(step, loss):
        if step == 1:
            raise KeyboardInterrupt

    with caplog.at_level(logging.INFO, logger="vqclip"), pytest.raises(KeyboardInterrupt):
        T.train_clip(_cfg(tiny_source, pairs_folder, tmp_path / "r", val=0.0), on_step=stop)
    assert "interrupted after step 1; no checkpoint was written yet" in caplog.text
    with pytest.raises(VqclipError, match="stopped before its first checkpoint"):
        T.train_clip(resume=tmp_path / "r")


def test_the_command_line_flags_reach_the_training(monkeypatch, capsys):
    import vqclip.train.clip as module

    seen = {}

    def fake(cfg=None, resume=None):
        seen["cfg"], seen["resume"] = cfg, resume
        return {"steps": 1, "images_per_s": 1.0, "after": None}

    monkeypatch.setattr(module, "train_clip", fake)
    assert main(["train", "clip", "--data", "d", "--from", "mini", "--out", "o", "--no-amp", "--lock-image",
                 "--classes", "red, blue", "--templates", "a {};the {}", "--devices", "cpu,cpu", "--accum", "2",
                 "--steps", "7", "--quiet"]) == 0
    cfg = seen["cfg"]
    assert (cfg.amp, cfg.lock_image, cfg.lock_text, cfg.accum, cfg.steps) == (False, True, False, 2, 7)
    assert cfg.classes == ["red", "blue"] and cfg.templates == ["a {}", "the {}"] and cfg.devices == "cpu,cpu"
    assert main(["train", "clip", "--resume", "somewhere"]) == 0 and str(seen["resume"]) == "somewhere"
    assert main(["train", "clip", "--data", "d", "--out", "o"]) == 2
    assert "--from missing" in capsys.readouterr().err
