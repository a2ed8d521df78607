"""`python -m vqclip.mini.train`: where the weights go, and errors as one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vqclip.mini import WEIGHTS_DIR
from vqclip.mini.train import cli as train


@pytest.fixture
def recorded(monkeypatch):
    """train_vqgan / train_clip replaced by recorders of the folder they were given."""
    seen = {}
    import vqclip.mini.train.clip as tc
    import vqclip.mini.train.vqgan as tv

    monkeypatch.setattr(tv, "train_vqgan", lambda out, **kw: seen.update(out=Path(out), kw=kw) or {"psnr": 1.0})
    monkeypatch.setattr(tc, "train_clip", lambda out, **kw: seen.update(out=Path(out), kw=kw) or {"acc": 1.0})
    return seen


def test_default_folder_is_not_the_shipped_weights(recorded, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train.main(["vqgan", "--seed", "3"]) == 0
    assert recorded["out"] == Path("mini-weights") and recorded["out"].resolve() != WEIGHTS_DIR
    assert recorded["kw"] == {"seed": 3} and '"psnr": 1.0' in capsys.readouterr().out


def test_out_and_stage_are_passed_on(recorded, tmp_path):
    assert train.main(["clip", "--out", str(tmp_path), "--stage", "2", "--steps", "5"]) == 0
    assert recorded["out"] == tmp_path and recorded["kw"] == {"seed": 0, "stage": "2", "steps": 5}


@pytest.mark.parametrize("stage", ["all", "3", "4"])
def test_clip_stages_that_generate_need_the_vqgan_first(tmp_path, capsys, stage):
    shutil.copy(WEIGHTS_DIR / "clip.safetensors", tmp_path / "clip.safetensors")
    assert train.main(["clip", "--out", str(tmp_path), "--stage", stage]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"python -m vqclip.mini.train vqgan --out {tmp_path}" in err[0]


def test_a_fine_tune_stage_without_its_start_is_one_line(tmp_path, capsys):
    assert train.main(["clip", "--out", str(tmp_path), "--stage", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run stage 1 first" in err[0]


@pytest.mark.parametrize("argv, expected", [(["vqgan", "--steps", "-1"], "--steps: must be >= 1, got -1"),
                                            (["vqgan", "--steps", "0"], "--steps: must be >= 1, got 0"),
                                            (["clip", "--out", "{file}"], "is a file, not a folder")])
def test_bad_arguments_are_one_line_before_any_training(recorded, tmp_path, capsys, argv, expected):
    (tmp_path / "weights.png").write_bytes(b"x")
    argv = [a.format(file=tmp_path / "weights.png") for a in argv]
    assert train.main([*argv, "--out", str(tmp_path / "w")] if "--out" not in argv else argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "out" not in recorded  # nothing was trained
