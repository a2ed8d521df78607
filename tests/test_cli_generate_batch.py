"""`vqclip generate --n N` (and `candidates.keep`) goes through the one planner of job lists: the same run folders,
job files and images as `vqclip run` gives for the same job with `n:`; a rerun skips the finished images and makes
only the missing ones, as `vqclip run` does; Ctrl-C stops the batch with exit code 130 and its grid of the runs made."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.runs import pipeline

SMALL = {"size": [16, 16], "cutouts": {"n": 2}, "steps": 2, "seed": 5, "prompt": "a red circle",
         "output": {"video": False, "save_every": 0, "progress": False}}
CASES = {"n": ({"n": 2}, ["--n", "2"], ["seed=5", "seed=6"]),
         "keep": ({"candidates": {"n": 3, "keep": 2, "steps": 1}},
                  ["--candidates", "3", "--set", "candidates.keep=2", "--set", "candidates.steps=1"],
                  ["best=1", "best=2"])}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def job_of(folder: Path) -> dict:
    """A run's job.yaml without its own folder (the one key that differs between two places of one job)."""
    job = yaml.safe_load((folder / "job.yaml").read_text())
    job["output"].pop("dir")
    return job


def generate_argv(tiny_args, case: str, out: Path) -> list[str]:
    return ["generate", SMALL["prompt"], *tiny_args, "--size", "16", "16", "--cutn", "2", "--steps", "2", "--seed",
            "5", "--no-video", "--save-every", "0", *CASES[case][1], "--out", str(out)]


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_job, tiny_args):
    """Each case's batch made by `vqclip run JOB.yaml` and by `vqclip generate ...` with the same values."""
    root = tmp_path_factory.mktemp("gen")
    files = {k: v for k, v in tiny_job.items() if k not in ("size", "cutouts", "output")}
    out = {}
    for case, (keys, _, _) in CASES.items():
        path = root / f"{case}.yaml"
        path.write_text(yaml.safe_dump({**files, **SMALL, **keys}))
        assert main(["run", str(path), "--quiet", "--out", str(root / f"run-{case}")]) == 0
        assert main(generate_argv(tiny_args, case, root / f"gen-{case}")) == 0
        out[case] = (root / f"run-{case}", root / f"gen-{case}")
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_generate_n_makes_the_folders_jobs_and_images_of_vqclip_run(made, case):
    ran, generated = made[case]
    names = CASES[case][2]
    for root in (ran, generated):
        assert sorted(p.name for p in root.iterdir()) == sorted([*names, "batch.yaml", "batch.html", "grid.png"])
    for name in names:
        assert job_of(generated / name) == job_of(ran / name), name
        assert np.array_equal(pixels(generated / name / "final.png"), pixels(ran / name / "final.png")), name
    assert yaml.safe_load((generated / "batch.yaml").read_text()) == yaml.safe_load((ran / "batch.yaml").read_text())
    assert not np.array_equal(pixels(generated / names[0] / "final.png"), pixels(generated / names[1] / "final.png"))


def test_a_rerun_of_generate_n_skips_finished_images_and_makes_the_missing_one(made, tiny_args, tmp_path,
                                                                               monkeypatch, capsys):
    out = tmp_path / "again"
    shutil.copytree(made["n"][1], out)
    first = pixels(out / "seed=5" / "final.png")
    second = pixels(out / "seed=6" / "final.png")
    shutil.rmtree(out / "seed=6")
    (out / "grid.png").unlink()
    ran, real = [], pipeline.run_job
    monkeypatch.setattr(pipeline, "run_job", lambda cfg, **kw: ran.append(Path(cfg.output.dir).name) or real(cfg, **kw))
    before = (out / "seed=5" / "final.png").read_bytes()
    assert main(generate_argv(tiny_args, "n", out)) == 0
    assert ran == ["seed=6"] and (out / "seed=5" / "final.png").read_bytes() == before
    assert np.array_equal(pixels(out / "seed=6" / "final.png"), second) and (out / "grid.png").is_file()
    assert np.array_equal(pixels(out / "seed=5" / "final.png"), first)
    assert f"batch: {out} (2 of 2 runs, grid and batch.yaml)" in capsys.readouterr().err
    assert main(generate_argv(tiny_args, "n", out)) == 0 and ran == ["seed=6"]  # both finished: nothing runs


def test_a_rerun_with_another_job_is_refused_before_any_run(made, tiny_args, tmp_path, capsys):
    out = tmp_path / "other"
    shutil.copytree(made["n"][1], out)
    argv = generate_argv(tiny_args, "n", out)
    argv[1] = "a blue square"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "prompt" in err[0], err


def test_ctrl_c_stops_the_batch_with_130_and_a_grid_of_the_runs_made(tiny_args, tmp_path, monkeypatch):
    real = pipeline.run_job

    def then_ctrl_c(cfg, **kw):
        run = real(cfg, **kw)
        kw["stop"].set()  # as Ctrl-C would, during the next image
        return run

    monkeypatch.setattr(pipeline, "run_job", then_ctrl_c)
    out = tmp_path / "stopped"
    assert main([*generate_argv(tiny_args, "n", out), "--n", "3"]) == 130
    record = yaml.safe_load((out / "batch.yaml").read_text())
    assert [r["done"] for r in record["runs"]] == [True, False, False] and (out / "grid.png").is_file()
    assert (out / "seed=6" / "final.png").is_file() and not (out / "seed=7").exists()
