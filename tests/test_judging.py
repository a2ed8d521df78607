"""Judging a run's frames: every saved frame scored into scores.json, best.png the highest-scored frame (ties: the
earlier), patience ending the run after K frames without improvement, and a resume (after a stop or a kill) ending
as the uninterrupted run does. The judge here is scripted: its scores are given, one per frame in order."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.files.images import read_metadata
from vqclip.files.scores import read_scores
from vqclip.runs import judging, pipeline
from vqclip.runs.callbacks import StopAfter
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.runs.plan import DONE, RESUME, folder_state
from vqclip.runs.resume import resume_run
from vqclip.runs.statefile import load_state


class ScriptedJudge:
    """Scores the n-th image it is shown script[first + n] (one frame per call; save_every 1: the frame's step)."""

    name, aesthetic_name = "scripted", None

    def __init__(self, script: list[float], first: int = 0):
        self.script, self.next = script, first

    def score(self, images):
        out = [{"judge": self.script[self.next + i], "aesthetic": None, "guide": 0.5} for i in range(len(images))]
        self.next += len(images)
        return out


def scripted(monkeypatch, script, first=0):
    """Runs from now on are judged by a ScriptedJudge of `script` (its first frame: `first`)."""
    monkeypatch.setattr(pipeline, "load_judge", lambda *a, **k: ScriptedJudge(script, first))


def job(tiny_job, out: Path, steps=8, **output) -> dict:
    return {**tiny_job, "prompt": "a red circle", "steps": steps, "seed": 5, "state_every": 2,
            "output": {"dir": str(out), "progress": False, "video": False, "save_every": 1, "judge": True, **output}}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


DOWNHILL = [0.1, 0.2, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01, 0.0, -0.1]  # best at step 2, then worse every frame


def test_every_saved_frame_is_scored_in_order(tiny_job, tmp_path, monkeypatch):
    scripted(monkeypatch, DOWNHILL)
    run = run_job(build_config(job(tiny_job, tmp_path / "r", steps=4)))
    data = read_scores(run.dir)
    assert [f["step"] for f in data["frames"]] == [0, 1, 2, 3, 4]  # 4 steps' frames and the final image
    assert [f["judge"] for f in data["frames"]] == DOWNHILL[:5]
    assert all((run.dir / f["file"]).is_file() for f in data["frames"])
    assert data["judge"]["model"] == "scripted" and data["stopped_by"] is None and data["best"] is None
    assert not (run.dir / "best.png").exists()  # keep_best off


@pytest.mark.parametrize("script, best", [([0.1, 0.3, 0.2, 0.3, 0.0, 0.0], 1),  # a tie: the earlier frame
                                          ([0.1, 0.3, 0.2, 0.31, 0.0, 0.0], 3)])  # just above: the later
def test_keep_best_keeps_the_highest_frame(tiny_job, tmp_path, monkeypatch, script, best):
    scripted(monkeypatch, script)
    run = run_job(build_config(job(tiny_job, tmp_path / "r", steps=5, keep_best=True)))
    data = read_scores(run.dir)
    assert data["best"] == {"step": best, "file": "best.png"}
    assert (run.dir / "best.png").read_bytes() == (run.dir / "frames" / f"{best:06d}.png").read_bytes()
    assert read_metadata(run.final)["best_step"] == best
    assert not run.result.stopped  # keep_best alone never stops a run


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_patience_stops_k_frames_after_the_best(tiny_job, tmp_path, monkeypatch, patience):
    scripted(monkeypatch, DOWNHILL)
    run = run_job(build_config(job(tiny_job, tmp_path / "r", patience=patience)))
    stop = 2 + patience  # the frame at which the judge has not improved for `patience` frames
    assert run.result.stopped and run.result.steps == stop + 1  # stopped at the end of that step
    assert not run.interrupted and run.result.info["stopped_by"] == "patience"  # its end, not the user's stop
    data = read_scores(run.dir)
    assert data["stopped_by"] == "patience"
    assert [f["step"] for f in data["frames"]] == list(range(stop + 2))  # the final image is scored too


def test_an_improvement_just_in_time_keeps_the_run_going(tiny_job, tmp_path, monkeypatch):
    scripted(monkeypatch, [0.1, 0.5, 0.4, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])  # better again at the 2nd frame after
    run = run_job(build_config(job(tiny_job, tmp_path / "r", patience=2)))
    assert run.result.stopped and run.result.steps == 6  # not at step 3: stopped at step 5, two after the new best


def test_patience_that_never_runs_out_ends_at_steps(tiny_job, tmp_path, monkeypatch):
    scripted(monkeypatch, [0.1 * i for i in range(10)])  # better every frame
    run = run_job(build_config(job(tiny_job, tmp_path / "r", steps=5, patience=1)))
    assert not run.result.stopped and run.result.steps == 5 and read_scores(run.dir)["stopped_by"] is None


@pytest.fixture(scope="module")
def whole(tiny_job, tmp_path_factory):
    """The uninterrupted run that patience 3 stops at step 5 (best at 2)."""
    with pytest.MonkeyPatch.context() as mp:
        scripted(mp, DOWNHILL)
        return run_job(build_config(job(tiny_job, tmp_path_factory.mktemp("whole") / "r", patience=3,
                                        keep_best=True)))


def same_end(run, whole) -> None:
    """`run` ended as `whole`: the same step, final image, scores and best frame."""
    assert run.result.steps == whole.result.steps == 6
    assert np.array_equal(pixels(run.final), pixels(whole.final))
    a, b = read_scores(run.dir), read_scores(whole.dir)
    assert [(f["step"], f["judge"]) for f in a["frames"]] == [(f["step"], f["judge"]) for f in b["frames"]]
    assert a["best"] == b["best"] == {"step": 2, "file": "best.png"} and a["stopped_by"] == "patience"
    assert np.array_equal(pixels(run.dir / "best.png"), pixels(whole.dir / "best.png"))


def test_a_run_that_patience_ended_is_complete(whole, tmp_path, tiny_job, monkeypatch):
    assert folder_state(whole.dir) == DONE and not whole.interrupted  # a plan's re-run skips it
    scripted(monkeypatch, DOWNHILL)
    cut = run_job(build_config(job(tiny_job, tmp_path / "cut", steps=3)), extra_callbacks=[StopAfter(1)])
    assert folder_state(cut.dir) == RESUME  # stopped by the user: a re-run goes on


def test_a_stopped_run_resumes_to_the_same_end(tiny_job, tmp_path, monkeypatch, whole):
    scripted(monkeypatch, DOWNHILL)
    cut = run_job(build_config(job(tiny_job, tmp_path / "cut", patience=3, keep_best=True)),
                  extra_callbacks=[StopAfter(4)])
    assert cut.interrupted and read_scores(cut.dir)["stopped_by"] is None
    start = load_state(cut.dir / "state.pt")["step"]
    assert start == 4
    scripted(monkeypatch, DOWNHILL, first=start)
    same_end(resume_run(cut.dir), whole)
    with pytest.raises(VqclipError, match="patience ended this run .* best.png is step 2"):
        resume_run(cut.dir)  # its end: nothing more to do


class Killed(BaseException):
    """A kill between two steps, after the frame of the step was scored (a process killed there)."""


def test_a_killed_run_resumes_with_the_same_counter(tiny_job, tmp_path, monkeypatch, whole):
    def kill(event):
        if event.step == 4:
            raise Killed

    scripted(monkeypatch, DOWNHILL)
    with pytest.raises(Killed):
        run_job(build_config(job(tiny_job, tmp_path / "killed", patience=3, keep_best=True)), extra_callbacks=[kill])
    folder = tmp_path / "killed"
    assert [f["step"] for f in read_scores(folder)["frames"]] == [0, 1, 2, 3, 4]  # frame 4 scored, then the kill
    start = load_state(folder / "state.pt")["step"]
    assert start == 4  # state saved every 2 steps: frame 4 is made again
    cfg = build_config(job(tiny_job, folder, patience=3, keep_best=True))
    rebuilt = judging.Judging(ScriptedJudge(DOWNHILL, start), cfg, folder, start)
    assert rebuilt.best_step == 2 and rebuilt.stale == 1  # frames 0-3 kept: one since the best, as the run had
    scripted(monkeypatch, DOWNHILL, first=start)
    same_end(resume_run(folder), whole)


def test_nothing_of_the_judge_loads_or_runs_when_off(tiny_job, tmp_path, monkeypatch):
    calls = {"load": 0, "score": 0, "check": 0}

    class Counting(ScriptedJudge):
        def score(self, images):
            calls["score"] += 1
            return super().score(images)

    def load(*a, **k):
        calls["load"] += 1
        return Counting([0.0] * 10)

    def check(cfg):
        calls["check"] += 1

    monkeypatch.setattr(pipeline, "load_judge", load)
    monkeypatch.setattr(pipeline, "check_judge", check)
    off = run_job(build_config(job(tiny_job, tmp_path / "off", steps=3, judge=False)))
    assert calls == {"load": 0, "score": 0, "check": 0} and not (off.dir / "scores.json").exists()
    on = run_job(build_config(job(tiny_job, tmp_path / "on", steps=3)))
    assert calls == {"load": 1, "score": 4, "check": 1}  # frames 0-2 and the final image
    assert np.array_equal(pixels(on.final), pixels(off.final))  # judging changes no pixel


@pytest.mark.parametrize("output, message", [
    ({"patience": 0}, "output.patience: must be >= 1"),
    ({"patience": -2}, "output.patience: must be >= 1"),
    ({"keep_best": True, "save_every": 0}, "output.save_every: the judge scores saved frames"),
])
def test_bad_judge_settings_are_one_line(tiny_job, tmp_path, capsys, monkeypatch, output, message):
    scripted(monkeypatch, DOWNHILL)  # were the setting taken, the run would go on offline
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({**job(tiny_job, tmp_path / "r", steps=2), "output": {
        "dir": str(tmp_path / "r"), "progress": False, **output}}))
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "r").exists()


def test_patience_one_is_the_boundary(tiny_job, tmp_path, monkeypatch):
    scripted(monkeypatch, DOWNHILL)
    cfg = build_config(job(tiny_job, tmp_path / "r", patience=1))
    assert cfg.output.patience == 1
    assert run_job(cfg).result.steps == 4  # best at 2, stopped at 3


def test_scoring_is_off_the_graph(tiny_job, tmp_path, monkeypatch):
    seen = []

    class Watching(ScriptedJudge):
        def score(self, images):
            seen.append((images.requires_grad, torch.is_grad_enabled()))
            return super().score(images)

    monkeypatch.setattr(pipeline, "load_judge", lambda *a, **k: Watching([0.0] * 10))
    run_job(build_config(job(tiny_job, tmp_path / "r", steps=2)))
    assert seen and all(not needs for needs, _ in seen)
