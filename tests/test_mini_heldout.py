"""The mini preset's held-out judge: a second small CLIP, another architecture than the guiding one, shipped small,
loaded as any CLIP is, trained by `python -m vqclip.mini.train judge` (the recipe's own code, a few steps here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vqclip.mini import WEIGHTS_DIR
from vqclip.mini.train import cli as train
from vqclip.mini.train.clip import CLIP_CONFIG, JUDGE_CONFIG
from vqclip.models.presets import get_preset
from vqclip.nets.clip import load_clip
from vqclip.runs.jobs import build_config
from vqclip.runs.judging import check_judge, judge_clip


def test_the_shipped_judge_is_small_another_architecture_and_other_weights():
    assert json.loads((WEIGHTS_DIR / "judge.json").read_text()) == JUDGE_CONFIG != CLIP_CONFIG
    assert (WEIGHTS_DIR / "judge.safetensors").stat().st_size <= 2_000_000
    judge, guide = load_file(WEIGHTS_DIR / "judge.safetensors"), load_file(WEIGHTS_DIR / "clip.safetensors")
    assert judge["visual.proj"].shape != guide["visual.proj"].shape  # another embedding: not the guide's weights
    clip = load_clip(str(WEIGHTS_DIR / "judge.json"), str(WEIGHTS_DIR / "judge.safetensors"))
    with torch.no_grad():
        t = clip.encode_text(["a red circle on a blue background", "a green square on a white background"])
    assert t.shape == (2, JUDGE_CONFIG["embed_dim"]) and not torch.allclose(t[0], t[1])


def test_mini_jobs_are_judged_by_it_and_never_guided_by_it():
    assert judge_clip(build_config({"model": "mini"})) == (str(WEIGHTS_DIR / "judge.json"),
                                                          str(WEIGHTS_DIR / "judge.safetensors"))
    check_judge(build_config({"model": "mini", "output": {"judge": True}}))  # the preset's guide: not the judge
    guided = build_config({"model": "mini", "clip": [{"model": str(WEIGHTS_DIR / "judge.json"),
                                                      "pretrained": str(WEIGHTS_DIR / "judge.safetensors")}]})
    with pytest.raises(Exception, match="also guides this run"):
        check_judge(guided)
    assert get_preset("mini").judge.model == "judge.json"


def test_the_training_command_trains_the_judge(monkeypatch, tmp_path):
    import vqclip.mini.train.clip as tc

    seen = {}
    monkeypatch.setattr(tc, "train_judge", lambda out, **kw: seen.update(out=Path(out), kw=kw) or {"all": 1.0})
    assert train.main(["judge", "--seed", "1", "--out", str(tmp_path), "--steps", "3"]) == 0
    assert seen == {"out": tmp_path, "kw": {"seed": 1, "steps": 3}}
