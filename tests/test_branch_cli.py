"""`vqclip branch RUN --at STEP` (vqclip/runs/branch.py's `branch_run`, the CLI in vqclip/cli/animate.py): a killed run
whose state.pt is at STEP is forked from it (the same state; resumed to the final.png of the child's job run from
scratch), one whose state is elsewhere from step 0; bad input is one line and exit 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.files.runfolder import RunFolder
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.runs.statefile import load_state

RED, GREEN = "a red circle on a blue background", "a green square"


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def job(tiny_job, out, **over) -> dict:
    """An 8-step tiny run that saves its state every 4 steps, steered at step 1."""
    return {**tiny_job, "prompt": RED, "steps": 8, "seed": 9, "state_every": 4, "optimizer": {"lr": 0.1},
            "steer": [{"at": 1, "lr": 0.2}], "output": {"dir": str(out), "progress": False, "video": False}, **over}


@pytest.fixture(scope="module")
def killed(tiny_job, tmp_path_factory):
    """A run stopped after the update of step 3: its state.pt is at step 4."""
    root = tmp_path_factory.mktemp("branch_cli")
    run = run_job(build_config(job(tiny_job, root / "run")), extra_callbacks=[lambda e: e.step >= 3])
    assert run.interrupted and load_state(run.dir / "state.pt")["step"] == 4
    return run.dir


def test_a_branch_at_the_states_step_starts_from_it_and_ends_as_its_job_from_scratch(killed, capsys):
    parent = load_state(killed / "state.pt")
    assert main(["branch", str(killed), "--at", "4", "--prompt", GREEN, "--stop"]) == 0
    assert "from its state then" in capsys.readouterr().err
    child = killed.parent / "run-b1"
    later = [p.name for p in (killed / "frames").glob("*.png") if int(p.stem) >= 4]
    assert later  # the stopped run's last frame, at step 4: the child's to make, not the parent's to give
    assert sorted(p.name for p in (child / "frames").glob("*.png")) == sorted(
        p.name for p in (killed / "frames").glob("*.png") if int(p.stem) < 4)
    start = load_state(child / "state.pt")
    for key in ("step", "z", "z_init", "rng", "torch_rng"):
        assert torch.equal(torch.as_tensor(start[key]), torch.as_tensor(parent[key])), key
    assert main(["resume", str(child), "--quiet"]) == 0
    recorded = yaml.safe_load((child / "job.yaml").read_text())
    assert [(e["at"], e["prompt"], e["lr"]) for e in recorded["steer"]] == [(1, "", 0.2), (4, GREEN, None)]
    assert recorded["branch"] == {"parent": "run", "step": 4}
    scratch = {**recorded, "output": {**recorded["output"], "dir": str(killed.parent / "scratch")}}
    (killed.parent / "scratch.yaml").write_text(yaml.safe_dump(scratch))
    assert main(["run", str(killed.parent / "scratch.yaml"), "--quiet"]) == 0
    assert np.array_equal(pixels(child / "final.png"), pixels(killed.parent / "scratch" / "final.png"))
    assert torch.equal(load_state(killed / "state.pt")["z"], parent["z"])  # the parent is left as it was


def test_a_branch_elsewhere_starts_from_step_0_and_says_so(killed, capsys):
    assert main(["branch", str(killed), "--at", "7", "--lr", "0.05", "--stop"]) == 0
    err = capsys.readouterr().err
    assert "from step 0" in err and "vqclip resume" in err
    child = killed.parent / "run-b2"
    assert not (child / "state.pt").exists() and not (child / "final.png").exists()
    recorded = yaml.safe_load((child / "job.yaml").read_text())
    assert [(e["at"], e["lr"]) for e in recorded["steer"]] == [(1, 0.2), (7, 0.05)]
    assert recorded["branch"] == {"parent": "run", "step": 7}


def test_a_branch_at_step_0_drops_every_steer_of_the_parent_and_runs(killed, capsys):
    assert main(["branch", str(killed), "--at", "0", "--prompt", GREEN, "--quiet"]) == 0
    assert "done:" in capsys.readouterr().err
    child = killed.parent / "run-b3"
    recorded = yaml.safe_load((child / "job.yaml").read_text())
    assert [(e["at"], e["prompt"]) for e in recorded["steer"]] == [(0, GREEN)]
    assert load_state(child / "state.pt")["step"] == 8 and (child / "final.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--at", "8", "--lr", "0.1"], "step 8 is outside the run's steps 0..7"),
    (["--at", "-1", "--lr", "0.1"], "step -1 is outside"),
    (["--at", "3"], "changes nothing"), (["--at", "3", "--lr", "-2"], "branch.lr"),
    (["--at", "3", "--prompt", "a:1|"], "empty part")])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(killed, capsys, argv, message):
    before = sorted(p.name for p in killed.parent.iterdir())
    assert main(["branch", str(killed), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in killed.parent.iterdir()) == before


def test_a_folder_that_is_no_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["branch", str(tmp_path), "--at", "1", "--lr", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a vqclip run folder" in err and len(err.splitlines()) == 1


def test_a_run_still_writing_its_folder_is_not_branched(killed, capsys):
    folder = RunFolder(killed).lock()
    try:
        assert main(["branch", str(killed), "--at", "4", "--lr", "0.1", "--stop"]) == 2
    finally:
        folder.unlock()
    assert "another vqclip run is writing this folder" in capsys.readouterr().err
    assert not (killed.parent / "run-b4").exists()
