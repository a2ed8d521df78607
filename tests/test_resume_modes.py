"""Exact resume of every mode after a kill: a still run, a story, best of n after its pick, a zoom (its moved init
target) and a restyle, each with init.weight > 0 (the init target shapes every step) and Adam (its moments are state);
the resumed run's frames, final.png, latent and init target are the uninterrupted run's, bit for bit."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_restyle import make_video
from vqclip.nets.load import ModelCache
from vqclip.runs.callbacks import StopAfter
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.runs.resume import resume_run
from vqclip.runs.statefile import load_state


CACHE = ModelCache()  # the tiny models, loaded once for this file's runs (they are frozen)


def run(cfg, **kwargs):
    return run_job(cfg, cache=CACHE, **kwargs)


def resume(folder, **kwargs):
    return resume_run(folder, cache=CACHE, **kwargs)


class Killed(Exception):
    """Stands for a SIGKILL: raised after a step's frame is written, before its state is saved."""


def kill_at(step: int, frame=None):
    def callback(event):
        if event.step == step and event.frame == frame:
            raise Killed
    return callback


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def frames(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: pixels(p) for p in sorted((folder / "frames").glob("*.png"))}


def base(tiny_job, out: Path, **over) -> dict:
    return {**tiny_job, "prompt": "a red cat", "steps": 8, "seed": 11, "state_every": 3, "init": {"weight": 0.5},
            "optimizer": {"name": "adam", "lr": 0.2},
            "output": {"dir": str(out), "progress": False, "save_every": 1, "video": False}, **over}


JOBS = {  # name: (job changes, the step killed at)
    "story": ({"prompt": "a red cat ^ a blue dog", "change_every": 3}, 7),
    "best of n after the pick": ({"candidates": {"n": 3, "steps": 2, "views": 2}, "seed": 14}, 5),  # start 2 goes on
    # moves after steps 0, 3, 6; state.pt at 2, 4, 6: the one at 6 holds the init target moved at 3, not z
    "zoom": ({"state_every": 2, "animation": {"mode": "zoom", "every": 3, "zoom": 1.1, "rotate": 4}}, 6),
}


def whole_and_killed(tiny_job, root: Path, over: dict, step: int):
    whole = run(build_config(base(tiny_job, root / "whole", **over)))
    with pytest.raises(Killed):
        run(build_config(base(tiny_job, root / "killed", **over)), extra_callbacks=[kill_at(step)])
    return whole, root / "killed"


def assert_same_run(resumed, whole) -> None:
    assert not resumed.interrupted and resumed.result.steps == whole.result.steps
    assert resumed.result.start == whole.result.start
    assert np.array_equal(pixels(resumed.final), pixels(whole.final))
    mine, theirs = load_state(resumed.dir / "state.pt"), load_state(whole.dir / "state.pt")
    for key in ("z", "z_init", "torch_rng", "rng"):
        assert torch.equal(mine[key], theirs[key]), key
    assert mine["step"] == theirs["step"] and mine["job"] == theirs["job"]
    ours, others = frames(resumed.dir), frames(whole.dir)
    assert list(ours) == list(others) and all(np.array_equal(ours[k], others[k]) for k in ours)
    assert [p.name for p in resumed.frames] == list(others)  # the frames its video is made of


@pytest.mark.parametrize("name", list(JOBS))
def test_a_killed_run_resumes_to_the_uninterrupted_one(tiny_job, tmp_path, name):
    over, step = JOBS[name]
    whole, killed = whole_and_killed(tiny_job, tmp_path, over, step)
    saved = load_state(killed / "state.pt")
    assert saved["step"] <= step and not (killed / "final.png").exists()
    assert saved["job"] == load_state(whole.dir / "state.pt")["job"]  # the periodic saves record the job too
    if name == "zoom":  # the init target the state holds is the latent moved at step 3, not z of step 6
        assert not torch.equal(saved["z_init"], saved["z"])
    if name.startswith("best"):
        assert saved["z"].shape[0] == 1 and whole.result.start == saved["start"] != 0
    assert_same_run(resume(killed), whole)


def test_a_killed_still_run_keeps_the_frames_before_its_state_and_remakes_those_after(tiny_job, tmp_path):
    """Killed at step 8 with state.pt at 6: frames 0-5 are kept as they are (the same files), 6 and 7 made again,
    and 8, not reached by a resume stopped after one step, removed; resumed to the end, it is the whole run."""
    whole, killed = whole_and_killed(tiny_job, tmp_path, {"steps": 9}, 8)
    assert load_state(killed / "state.pt")["step"] == 6
    inode = {p.name: p.stat().st_ino for p in (killed / "frames").glob("*.png")}
    assert sorted(inode) == [f"{i:06d}.png" for i in range(9)]
    stopped = resume(killed, extra_callbacks=[StopAfter(1)])
    assert stopped.interrupted and load_state(killed / "state.pt")["step"] == 7
    assert [p.name for p in stopped.frames] == [f"{i:06d}.png" for i in range(8)]  # its video's frames
    now = {p.name: p.stat().st_ino for p in (killed / "frames").glob("*.png")}
    assert sorted(now) == [f"{i:06d}.png" for i in range(8)]
    assert all(now[f"{i:06d}.png"] == inode[f"{i:06d}.png"] for i in range(6))
    assert all(now[f"{i:06d}.png"] != inode[f"{i:06d}.png"] for i in (6, 7))
    ours = frames(killed)
    assert all(np.array_equal(ours[k], pixels(whole.dir / "frames" / k)) for k in ours)
    assert_same_run(resume(killed), whole)


def test_a_killed_restyle_resumes_at_its_first_missing_frame(tiny_job, tmp_path):
    video = make_video(tmp_path, n=2, audio=False)
    job = lambda out: {**base(tiny_job, out), "restyle": {"input": str(video), "steps_per_frame": 2,  # noqa: E731
                                                          "blend": 0.5}}
    whole = run(build_config(job(tmp_path / "whole")))
    with pytest.raises(Killed):
        run(build_config(job(tmp_path / "killed")), extra_callbacks=[kill_at(1, frame=1)])
    killed = tmp_path / "killed"
    assert sorted(frames(killed)) == ["000000.png"] and not (killed / "state.pt").exists()
    made = {p.name: p.stat().st_ino for p in (killed / "frames").glob("*.png")}
    resumed = resume(killed)
    assert {p.name: p.stat().st_ino for p in (killed / "frames").glob("*.png") if p.name in made} == made
    ours, others = frames(killed), frames(whole.dir)
    assert list(ours) == list(others) == [f"{i:06d}.png" for i in range(2)]
    assert all(np.array_equal(ours[k], others[k]) for k in ours)
    assert np.array_equal(pixels(resumed.final), pixels(whole.final))
