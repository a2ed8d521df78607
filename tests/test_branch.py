"""Branching a run (vqclip/runs/branch.py, `Steering.branch`): a live branch at step k writes a child folder beside
the parent's whose job is the parent's steers before k + the branch's changes at k + `branch: {parent, step}` and
whose state.pt is the parent's state at the start of k; resuming the child and running its job.yaml from scratch give
the same final.png; the parent goes on unchanged, or stops with stop=True."""

from __future__ import annotations

import shutil
from concurrent.futures import Future

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.files.images import read_metadata
from vqclip.optim.steer import Steering
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.runs.resume import resume_run
from vqclip.runs.statefile import load_state

from test_api import pipe  # noqa: F401  (the tiny-model Pipeline fixture)

RED, YELLOW, GREEN = "a red circle on a blue background", "a yellow circle on a blue background", "a green square"
LR, K = 0.1, 6


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def job(tiny_job, out, **over) -> dict:
    """A 10-step tiny run that saves its state every 2 steps."""
    return {**tiny_job, "prompt": RED, "steps": 10, "seed": 7, "state_every": 2, "optimizer": {"lr": LR},
            "output": {"dir": str(out), "progress": False, "video": False}, **over}


@pytest.fixture(scope="module")
def runs(tiny_job, tmp_path_factory):
    """A parent run steered to YELLOW at step 3 and branched twice (GREEN at step K, lr at step 8), with a copy of
    its state.pt at step K; the child of step K resumed and its job.yaml run from scratch; the unbranched run."""
    root = tmp_path_factory.mktemp("branch")
    steering, futures = Steering(), {}

    def wheel(event) -> None:
        if event.step == 2:
            steering.steer(prompt=YELLOW)
        if event.step == K - 1:  # taken at the start of step K
            futures["b1"] = steering.branch(prompt=GREEN)
        if event.step == K:  # state.pt now holds the state after K updates' start: the one saved after step K-1
            shutil.copyfile(root / "live" / "state.pt", root / "at_k.pt")
        if event.step == 7:
            futures["b2"] = steering.branch(lr=LR / 4)

    live = run_job(build_config(job(tiny_job, root / "live")), steering=steering, extra_callbacks=[wheel])
    child = futures["b1"].result(0)
    start = load_state(child / "state.pt")
    recorded = yaml.safe_load((child / "job.yaml").read_text())
    resumed = resume_run(child)
    scratch = {**recorded, "output": {**recorded["output"], "dir": str(root / "scratch")}}
    (root / "scratch.yaml").write_text(yaml.safe_dump(scratch))
    assert main(["run", str(root / "scratch.yaml"), "--quiet"]) == 0
    unbranched = run_job(build_config(job(tiny_job, root / "plain", steer=[{"at": 3, "prompt": YELLOW}])))
    return {"root": root, "live": live, "steering": steering, "futures": futures, "child": child, "start": start,
            "recorded": recorded, "resumed": resumed, "unbranched": unbranched}


def test_a_branch_is_a_folder_beside_its_parent_with_the_parents_past_and_its_change(runs):
    assert isinstance(runs["futures"]["b1"], Future)
    assert runs["child"] == runs["root"] / "live-b1"
    assert runs["futures"]["b2"].result(0) == runs["root"] / "live-b2"
    steer = [{k: v for k, v in e.items() if v not in (None, "")} for e in runs["recorded"]["steer"]]
    assert steer == [{"at": 3, "prompt": YELLOW}, {"at": K, "prompt": GREEN}]
    assert runs["recorded"]["branch"] == {"parent": "live", "step": K}
    b2 = yaml.safe_load((runs["root"] / "live-b2" / "job.yaml").read_text())
    assert [{k: v for k, v in e.items() if v not in (None, "")} for e in b2["steer"]] == [
        {"at": 3, "prompt": YELLOW}, {"at": 8, "lr": LR / 4}]
    assert b2["branch"] == {"parent": "live", "step": 8}
    before = {p.name: p.read_bytes() for p in (runs["root"] / "live" / "frames").glob("*.png") if int(p.stem) < K}
    assert before and {p.name: p.read_bytes() for p in (runs["child"] / "frames").glob("*.png")
                       if int(p.stem) < K} == before  # the parent's frames before the branch, taken along


def test_the_childs_start_is_the_parents_state_at_the_branch_step(runs):
    parent = load_state(runs["root"] / "at_k.pt")
    start = runs["start"]
    assert parent["step"] == start["step"] == K
    for key in ("z", "z_init", "rng", "torch_rng"):
        assert torch.equal(start[key], parent[key]), key
    assert all(torch.equal(a, b) for a, b in zip(start["optimizer"]["state"][0].values(),
                                                 parent["optimizer"]["state"][0].values()))


def test_resuming_the_child_gives_the_final_png_of_its_job_run_from_scratch(runs):
    scratch = runs["root"] / "scratch" / "final.png"
    assert np.array_equal(pixels(runs["resumed"].final), pixels(scratch))
    assert not np.array_equal(pixels(runs["resumed"].final), pixels(runs["live"].final))  # the branch changed it
    meta = read_metadata(runs["resumed"].final)
    assert meta["config"]["branch"] == {"parent": "live", "step": K}
    with Image.open(runs["resumed"].final) as im:
        assert f"Branch of: live at step {K}" in im.info["parameters"]


def test_the_parent_goes_on_as_the_unbranched_run(runs):
    assert np.array_equal(pixels(runs["live"].final), pixels(runs["unbranched"].final))
    assert not runs["live"].interrupted
    parent = yaml.safe_load((runs["live"].dir / "job.yaml").read_text())
    assert [(e["at"], e["prompt"]) for e in parent["steer"]] == [(3, YELLOW)]  # a branch is not a steer of the parent
    assert parent["branch"] == {"parent": "", "step": 0}


def test_a_branch_with_stop_stops_the_parent_at_the_end_of_that_step(tiny_job, tmp_path):
    steering = Steering()
    got = []

    def wheel(event) -> None:
        if event.step == 1:
            got.append(steering.branch(stop=True, lr=LR / 2))

    run = run_job(build_config(job(tiny_job, tmp_path / "p", steps=6)), steering=steering, extra_callbacks=[wheel])
    assert run.interrupted and run.result.steps == 3  # taken at the start of step 2, stopped at its end
    assert got[0].result(0) == tmp_path / "p-b1"
    assert load_state(tmp_path / "p-b1" / "state.pt")["step"] == 2


def test_a_branch_of_a_finished_run_is_the_same_one_line_error_as_a_steer(runs):
    with pytest.raises(VqclipError, match="branch: the run has finished") as err:
        runs["steering"].branch(prompt=GREEN)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("change, message", [({"colour": "red"}, "branch: unknown key 'colour'"),
                                             ({}, "branch: changes nothing"), ({"lr": -1}, r"branch\.lr")])
def test_a_bad_branch_is_refused_at_once_and_nothing_waits(change, message):
    steering = Steering()
    with pytest.raises(VqclipError, match=message):
        steering.branch(**change)
    assert steering.take() == []


def test_a_branch_waiting_when_the_run_ends_gets_an_error_not_a_hang():
    steering = Steering()
    future = steering.branch(lr=0.05)
    steering.finish()
    with pytest.raises(VqclipError, match="ended before"):
        future.result(0)


@pytest.mark.parametrize("step, ok", [(0, True), (9, True), (10, False), (-1, False)])
def test_a_branch_step_is_a_step_of_the_run(tiny_job, tmp_path, step, ok):
    keys = job(tiny_job, tmp_path / "x", branch={"parent": "p", "step": step})
    if ok:
        assert build_config(keys).branch.step == step
    else:
        with pytest.raises(VqclipError, match="branch.step") as err:
            build_config(keys)
        assert "\n" not in str(err.value)


def test_a_stream_into_a_folder_branches_and_one_in_memory_says_how(pipe, tmp_path):
    gate = []

    def wheel(event) -> None:
        if event.step == 1:
            gate.append(stream.branch(prompt=GREEN))

    stream = pipe.stream(RED, steps=4, seed=2, size=32, cutouts={"n": 2}, state_every=2, out=tmp_path / "s",
                         output={"video": False}, callbacks=[wheel])
    list(stream)
    assert gate[0].result(0) == tmp_path / "s-b1" and stream.run.dir == tmp_path / "s"
    assert yaml.safe_load((tmp_path / "s-b1" / "job.yaml").read_text())["branch"] == {"parent": "s", "step": 2}
    memory = pipe.stream(RED, steps=2, seed=2, size=32, cutouts={"n": 2})
    with pytest.raises(VqclipError, match="out="):
        memory.branch(prompt=GREEN)
    list(memory)
