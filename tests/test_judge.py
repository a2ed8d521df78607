"""The held-out judge: presets name one (a CLIP that never guides their runs, with an optional LAION aesthetic head
read weights-only in its published layout); it scores whole images against the prompt as open_clip computes the
cosine; a job that guides with its own judge is refused in one line."""

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tiny import write_clip, write_vqgan
from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.files.scores import read_scores
from vqclip.models.presets import BUILTIN_FILE, get_preset, load_presets_file
from vqclip.nets.clip import load_clip
from vqclip.nets.judge import Judge, load_aesthetic
from vqclip.runs.jobs import build_config
from vqclip.runs.judging import check_judge, judge_texts
from vqclip.runs.pipeline import run_job


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny VQGAN, a tiny guide CLIP and another tiny CLIP (other weights) to judge with."""
    root = tmp_path_factory.mktemp("judge")
    return {"vqgan": write_vqgan(root / "vqgan"), "guide": write_clip(root / "guide"),
            "judge": write_clip(root / "other", seed=1, name="judge")}


def preset_file(tmp_path: Path, judge: dict | None) -> Path:
    """A user presets file with one preset `mine` whose judge is `judge` (None: it names none)."""
    body = {"description": "a test preset", "vqgan": {"config": {"filename": "v.yaml"},
                                                       "checkpoint": {"filename": "v.ckpt"}}}
    if judge is not None:
        body["judge"] = judge
    path = tmp_path / "presets.yaml"
    path.write_text(yaml.safe_dump({"presets": {"mine": body}}))
    return path


def job(models, out: Path, guide=None, **over) -> dict:
    guide = guide or models["guide"]
    return {"model": "mine", "vqgan": {"config": str(models["vqgan"][0]), "checkpoint": str(models["vqgan"][1])},
            "clip": [{"model": str(guide[0]), "pretrained": str(guide[1])}], "prompt": "a red circle", "steps": 2,
            "seed": 1, "size": [32, 32], "cutouts": {"n": 2},
            "output": {"dir": str(out), "progress": False, "video": False, "save_every": 1, "judge": True}, **over}


def judged_by(monkeypatch, tmp_path, clip) -> None:
    monkeypatch.setenv("VQCLIP_PRESETS", str(preset_file(tmp_path, {"model": str(clip[0]),
                                                                      "pretrained": str(clip[1])})))


def test_builtin_presets_name_a_larger_judge_with_a_pinned_head():
    presets = load_presets_file(BUILTIN_FILE, builtin=True)
    for name, preset in presets.items():
        assert preset.judge is not None, name
        if preset.embedded:
            assert (preset.judge.model, preset.judge.pretrained) == ("judge.json", "judge.safetensors")
            assert preset.judge.pretrained != preset.clip_pretrained
            continue
        assert (preset.judge.model, preset.judge.pretrained) == ("ViT-L-14", "openai") != (preset.clip_model,
                                                                                             preset.clip_pretrained)
        head = preset.judge.aesthetic
        assert head.filename == "sa_0_4_vit_l_14_linear.pth"
        assert head.urls[0].startswith("https://github.com/LAION-AI/aesthetic-predictor/")


@pytest.mark.parametrize("judge, message", [({"pretrained": "x"}, "missing required key 'model'"),
                                            ({"model": "m", "weights": "x"}, "unknown key 'weights'"),
                                            ({"model": "m", "aesthetic": {"filename": "a/b.pth"}},
                                             "must be a bare file name")])
def test_a_bad_judge_entry_is_one_line(tmp_path, monkeypatch, judge, message):
    monkeypatch.setenv("VQCLIP_PRESETS", str(preset_file(tmp_path, judge)))
    with pytest.raises(VqclipError, match=message):
        get_preset("mine")


def linear_head_file(path: Path, dim: int, seed: int = 0) -> torch.nn.Linear:
    """A head in LAION-AI/aesthetic-predictor's published layout: torch.save of nn.Linear(D, 1).state_dict()."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(dim, 1)
    torch.save(layer.state_dict(), path)
    return layer


def test_aesthetic_head_loads_the_published_layout(tmp_path):
    layer = linear_head_file(tmp_path / "sa_0_4_vit_l_14_linear.pth", 16)
    head = load_aesthetic(tmp_path / "sa_0_4_vit_l_14_linear.pth", 16)
    feats = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
    expected = feats @ layer.weight.detach().t() + layer.bias.detach()
    assert torch.allclose(head(feats), expected[:, 0], atol=1e-6)


def test_aesthetic_head_refuses_what_does_not_fit(tmp_path):
    linear_head_file(tmp_path / "h.pth", 16)
    with pytest.raises(VqclipError, match="for a 16-d embedding, but the judge's is 15-d"):
        load_aesthetic(tmp_path / "h.pth", 15)
    torch.save({"weight": torch.zeros(1, 4), "bias": torch.zeros(1), "extra": torch.zeros(1)}, tmp_path / "x.pth")
    with pytest.raises(VqclipError, match="not an aesthetic head"):
        load_aesthetic(tmp_path / "x.pth", 4)


class Boom:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


def test_aesthetic_head_never_runs_code(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:  # a legacy (non-zip) pickle that calls a function when loaded
        pickle.dump({"weight": Boom(), "bias": torch.zeros(1)}, f)
    torch.save({"weight": Boom(), "bias": torch.zeros(1)}, tmp_path / "evil_zip.pth")  # and the zip format
    for p in (path, tmp_path / "evil_zip.pth"):
        with pytest.raises(VqclipError):
            load_aesthetic(p, 4)
    assert "ran code" not in capsys.readouterr().out


def test_judge_scores_are_open_clips_cosines(models):
    judge_clip = load_clip(str(models["judge"][0]), str(models["judge"][1]))
    guide_clip = load_clip(str(models["guide"][0]), str(models["guide"][1]))
    texts = [("a red circle", 1.0), ("blue", 3.0)]
    head = torch.nn.Linear(judge_clip.encode_text(["a"]).shape[-1], 1)
    from vqclip.nets.judge import AestheticHead

    aesthetic = AestheticHead(head.in_features)
    aesthetic.linear.load_state_dict(head.state_dict())
    judge = Judge(judge_clip, texts, [(guide_clip, 2.0)], aesthetic.eval().requires_grad_(False))
    size = judge_clip.image_size
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    got = judge.score(images)

    def cosine(clip):  # open_clip directly: normalised image and text features, the texts' weighted mean
        with torch.no_grad():
            x = (images - torch.tensor(clip.preprocess_cfg.mean).view(1, 3, 1, 1)) / torch.tensor(
                clip.preprocess_cfg.std).view(1, 3, 1, 1)
            f = torch.nn.functional.normalize(clip.model.encode_image(x), dim=-1)
            t = torch.nn.functional.normalize(clip.model.encode_text(clip.tokenizer([t for t, _ in texts])), dim=-1)
            return f, (f @ t.t()) @ torch.tensor([0.25, 0.75])

    feats, expected = cosine(judge_clip)
    assert np.allclose([g["judge"] for g in got], expected.numpy(), atol=1e-5)
    assert np.allclose([g["guide"] for g in got], cosine(guide_clip)[1].numpy(), atol=1e-5)
    with torch.no_grad():
        assert np.allclose([g["aesthetic"] for g in got], head(feats)[:, 0].numpy(), atol=1e-5)


def test_judge_texts_are_the_positive_text_targets():
    cfg = build_config({"prompt": "a red circle:2|blurry:-1|a blue square", "steps": 4})
    assert judge_texts(cfg) == [("a red circle", 2.0), ("a blue square", 1.0)]
    story = build_config({"prompt": "a red circle ^ a blue square", "steps": 4})
    assert [t for t, _ in judge_texts(story)] == ["a red circle", "a blue square"]


def test_a_job_guided_by_its_own_judge_is_one_line(models, tmp_path, monkeypatch, capsys):
    judged_by(monkeypatch, tmp_path, models["guide"])
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(job(models, tmp_path / "run")))
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "the judge" in err and "also guides this run (clip[0])" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
    copy = tmp_path / "copy"  # the same weights under another name are the same model
    copy.mkdir()
    renamed = (shutil.copy(models["guide"][0], copy / "a.json"),
               shutil.copy(models["guide"][1], copy / "a.safetensors"))
    with pytest.raises(VqclipError, match="also guides this run"):
        check_judge(build_config(job(models, tmp_path / "run", guide=renamed)))


def test_a_judge_that_does_not_guide_scores_the_run(models, tmp_path, monkeypatch):
    judged_by(monkeypatch, tmp_path, models["judge"])
    check_judge(build_config(job(models, tmp_path / "x")))  # other weights: no overlap
    run = run_job(build_config(job(models, tmp_path / "run")))
    data = read_scores(run.dir)
    assert data["judge"] == {"model": "judge.json judge.safetensors", "aesthetic": None}
    assert data["guides"] == ["clip.json clip.safetensors"]
    assert [f["step"] for f in data["frames"]] == [0, 1, 2]
    assert all(-1 <= f["judge"] <= 1 and -1 <= f["guide"] <= 1 and f["aesthetic"] is None for f in data["frames"])
    assert len({f["judge"] for f in data["frames"]}) > 1  # each frame its own score


def test_a_preset_without_a_judge_is_one_line(models, tmp_path, monkeypatch):
    monkeypatch.setenv("VQCLIP_PRESETS", str(preset_file(tmp_path, None)))
    with pytest.raises(VqclipError, match="the mine preset names no judge"):
        check_judge(build_config(job(models, tmp_path / "run")))
