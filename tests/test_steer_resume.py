"""Resuming steered runs (vqclip/runs/statefile.py's check of a state's steers, vqclip/runs/resume.py): a steer taken
after the last state.pt is the state's future, so the kill between them resumes to the uninterrupted image; a steer
before the state's step that job.yaml changed is refused, in one line naming it; a resumed run steered live records
its new steers after the old ones."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vqclip.config import SteerEntry
from vqclip.errors import VqclipError
from vqclip.optim.steer import Steering
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.runs.resume import resume_run
from vqclip.runs.statefile import check_job, job_settings, load_state

RED, YELLOW = "a red circle on a blue background", "a yellow circle on a blue background"


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def job(tiny_job, out, **over) -> dict:
    """An 8-step tiny run that saves its state every 4 steps."""
    return {**tiny_job, "prompt": RED, "steps": 8, "seed": 3, "state_every": 4, "optimizer": {"lr": 0.1},
            "output": {"dir": str(out), "progress": False, "video": False}, **over}


@pytest.fixture(scope="module")
def gap(tiny_job, tmp_path_factory):
    """A run steered at step 5 (after the state.pt of step 4), copied as a kill at step 6 would leave it."""
    root = tmp_path_factory.mktemp("gap")
    steering = Steering()

    def wheel(event) -> None:
        if event.step == 4:
            steering.steer(prompt=YELLOW)  # taken at the start of step 5
        if event.step == 6:
            shutil.copytree(root / "live", root / "killed")
            shutil.copytree(root / "live", root / "killed2")  # a second copy, steered when resumed

    live = run_job(build_config(job(tiny_job, root / "live")), steering=steering, extra_callbacks=[wheel])
    return {"root": root, "live": live}


def test_a_run_killed_after_a_steer_newer_than_its_state_resumes_to_the_uninterrupted_image(gap):
    killed = gap["root"] / "killed"
    assert load_state(killed / "state.pt")["step"] == 4  # saved before the steer, which job.yaml holds (at 5)
    assert [e["at"] for e in yaml.safe_load((killed / "job.yaml").read_text())["steer"]] == [5]
    assert np.array_equal(pixels(resume_run(killed).final), pixels(gap["live"].final))


def steered(tiny_job, *entries):
    return build_config(job(tiny_job, "x", steer=[{"at": at, "prompt": p} for at, p in entries]))


def test_steers_at_or_after_the_states_step_may_differ(tiny_job):
    saved = {"step": 4, "job": job_settings(steered(tiny_job, (2, YELLOW)))}
    assert check_job(saved, steered(tiny_job, (2, YELLOW), (4, "a cat")), Path("state.pt"))  # at == step: future
    assert check_job(saved, steered(tiny_job, (2, YELLOW), (7, "a cat")), Path("state.pt"))
    with_future = {"step": 4, "job": job_settings(steered(tiny_job, (2, YELLOW), (4, "a dog")))}
    assert check_job(with_future, steered(tiny_job, (2, YELLOW)), Path("state.pt"))  # a future steer dropped


@pytest.mark.parametrize("now, named", [([(3, YELLOW)], "steer[0]"), ([(2, "a cat")], "steer[0]"),
                                        ([(2, YELLOW), (3, "a cat")], "steer[1]"), ([], "steer[0] is missing")])
def test_a_changed_steer_before_the_states_step_is_refused_in_one_line_naming_it(tiny_job, now, named):
    saved = {"step": 4, "job": job_settings(steered(tiny_job, (2, YELLOW)))}
    with pytest.raises(VqclipError, match="changed a steer before it") as err:
        check_job(saved, steered(tiny_job, *now), Path("state.pt"))
    assert named in str(err.value) and "\n" not in str(err.value)


def test_other_changed_settings_are_still_refused(tiny_job):
    saved = {"step": 4, "job": job_settings(steered(tiny_job, (2, YELLOW)))}
    cfg = steered(tiny_job, (2, YELLOW))
    with pytest.raises(VqclipError, match="cutouts.n"):
        check_job(saved, replace(cfg, cutouts=replace(cfg.cutouts, n=3)), Path("state.pt"))


def test_a_resumed_run_steered_live_records_its_new_steers_after_the_old_ones(gap, tiny_job, tmp_path):
    folder = gap["root"] / "killed2"
    steering = Steering()
    wheel = lambda event: steering.steer(lr=0.05) if event.step == 5 else None  # noqa: E731
    resumed = resume_run(folder, steering=steering, extra_callbacks=[wheel])
    want = [{"at": 5, "prompt": YELLOW}, {"at": 6, "lr": 0.05}]
    assert steering.entries == want
    recorded = yaml.safe_load((folder / "job.yaml").read_text())["steer"]
    assert [{k: v for k, v in e.items() if v not in (None, "")} for e in recorded] == want
    replay = run_job(build_config(job(tiny_job, tmp_path / "replay", steer=want)))
    assert np.array_equal(pixels(replay.final), pixels(resumed.final))
    with pytest.raises(VqclipError, match="finished"):
        steering.steer(lr=0.01)


def test_a_resume_refused_before_it_runs_finishes_its_steering(gap):
    steering = Steering()
    with pytest.raises(VqclipError, match="already finished"):
        resume_run(gap["live"].dir, steering=steering)
    with pytest.raises(VqclipError, match="finished"):
        steering.steer(lr=0.01)


def test_steer_entries_compare_as_the_job_writes_them(tiny_job):
    cfg = steered(tiny_job, (2, YELLOW))
    assert job_settings(cfg)["steer"] == [{"at": 2, "prompt": YELLOW, "lr": None}]
    assert cfg.steer == [SteerEntry(at=2, prompt=YELLOW)]
