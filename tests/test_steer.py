"""Steering (vqclip/optim/steer.py, the loop, the pipeline, the API): a change takes effect at the start of the next
step, is recorded as a `steer:` entry of the job, and the recorded job replays the steered run bit for bit (and its
resume ends as it); pause leaves no mark; bad steers are one-line errors that leave the run as it was."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.files.images import read_metadata
from vqclip.config import GenerateConfig, OptimizerConfig, SteerEntry
from vqclip.optim.steer import QUEUE_SIZE, Steered, Steering
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import generate, run_job
from vqclip.runs.resume import resume_run, state_path
from vqclip.runs.statefile import load_state

RED, YELLOW = "a red circle on a blue background", "a yellow circle on a blue background"
LR = 0.1


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def job(tiny_job, out, **over) -> dict:
    """A 12-step tiny run that saves its state every 4 steps."""
    return {**tiny_job, "prompt": RED, "steps": 12, "seed": 5, "state_every": 4, "optimizer": {"lr": LR},
            "output": {"dir": str(out), "progress": False, "video": False}, **over}


class Wheel:
    """A callback that steers its run: after the update of step 3, a new prompt; after step 6, the lr halved and a
    pause that another thread lifts; at step 9, a copy of the run folder as a SIGKILL would leave it (`copy`: from
    `folder` to `to`); returns True (stop) after step `stop_after`."""

    def __init__(self, steering: Steering, stop_after: int = 99, copy: tuple = ()):
        self.steering, self.stop_after, self.waited, self.copy = steering, stop_after, threading.Event(), copy

    def __call__(self, event) -> bool:
        if event.step == 9 and self.copy:  # state.pt of step 8 (after both steers), no final.png yet
            shutil.copytree(*self.copy)
        if event.step == 3:
            self.steering.steer(prompt=YELLOW)
        if event.step == 6:
            self.steering.steer(lr=LR / 2)
            self.steering.pause()
            threading.Thread(target=self.lift, daemon=True).start()
        return event.step >= self.stop_after

    def lift(self) -> None:
        self.waited.set()
        self.steering.resume()


@pytest.fixture(scope="module")
def runs(tiny_job, tmp_path_factory):
    """The live-steered run, the replay of its job.yaml, and the plain run of the same job."""
    root = tmp_path_factory.mktemp("steer")
    steering = Steering()
    wheel = Wheel(steering, copy=(root / "live", root / "killed"))
    live = run_job(build_config(job(tiny_job, root / "live")), steering=steering, extra_callbacks=[wheel])
    recorded = yaml.safe_load((live.dir / "job.yaml").read_text())
    recorded["output"]["dir"] = str(root / "replay")
    replay = run_job(build_config(recorded))
    plain = run_job(build_config(job(tiny_job, root / "plain")))
    return {"live": live, "replay": replay, "plain": plain, "wheel": wheel, "steering": steering, "root": root}


def test_each_change_is_recorded_at_the_step_it_took_effect(runs):
    want = [{"at": 4, "prompt": YELLOW}, {"at": 7, "lr": LR / 2}]
    assert runs["steering"].entries == want
    recorded = yaml.safe_load((runs["live"].dir / "job.yaml").read_text())["steer"]
    assert [{k: v for k, v in e.items() if v not in (None, "")} for e in recorded] == want
    inside = read_metadata(runs["live"].final)["config"]["steer"]
    assert [{k: v for k, v in e.items() if v not in (None, "")} for e in inside] == want
    assert runs["wheel"].waited.is_set()  # the pause was lifted from another thread


def test_the_recorded_job_replays_the_steered_run_bit_for_bit(runs):
    assert np.array_equal(pixels(runs["replay"].final), pixels(runs["live"].final))
    assert torch.equal(runs["replay"].result.z, runs["live"].result.z)
    assert not np.array_equal(pixels(runs["plain"].final), pixels(runs["live"].final))  # the steers did something


def test_steps_before_the_first_steer_are_the_plain_runs(runs):
    live, plain = runs["live"].result.losses, runs["plain"].result.losses
    assert live[:4] == plain[:4]  # the steer sent after step 3 takes effect at the start of step 4, not before
    assert live[4] != plain[4]


def test_a_steered_run_killed_after_its_steers_resumes_to_the_same_image(runs):
    killed = runs["root"] / "killed"
    assert not (killed / "final.png").exists()
    assert load_state(state_path(killed))["step"] == 8
    resumed = resume_run(killed)  # from step 8: job.yaml and state.pt hold both steers
    assert np.array_equal(pixels(resumed.final), pixels(runs["live"].final))


def test_a_stopped_steered_run_resumes_to_the_same_image(tiny_job, runs):
    steering = Steering()
    cut = run_job(build_config(job(tiny_job, runs["root"] / "cut")), steering=steering,
                  extra_callbacks=[Wheel(steering, stop_after=8)])
    assert cut.interrupted and not steering.paused
    resumed = resume_run(cut.dir)  # from step 9, after both steers: the objective is the steered job's
    assert np.array_equal(pixels(resumed.final), pixels(runs["live"].final))


def test_a_steer_to_a_finished_run_is_an_error(runs):
    steering = runs["steering"]
    with pytest.raises(VqclipError, match="finished"):
        steering.steer(prompt=YELLOW)
    with pytest.raises(VqclipError, match="finished"):
        steering.pause()


@pytest.mark.parametrize("change, message", [
    ({"colour": "blue"}, "unknown key 'colour'"), ({"prompt": "a:1|"}, "empty part"), ({"lr": -0.1}, "lr"),
    ({"lr": 0}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": True}, "lr"), ({}, "changes nothing"),
    ({"prompt": "blurry:-1"}, "nothing to aim at"), ({"prompt": 3}, "expected a text")])
def test_a_bad_steer_is_one_line_and_leaves_nothing_queued(change, message):
    steering = Steering()
    with pytest.raises(VqclipError, match=message) as err:
        steering.steer(**change)
    assert "\n" not in str(err.value)
    assert steering.take() == []


def test_a_full_queue_refuses_the_next_steer_and_keeps_every_queued_one():
    steering = Steering()
    for i in range(QUEUE_SIZE):
        steering.steer(lr=0.001 * (i + 1))
    with pytest.raises(VqclipError, match="waiting"):
        steering.steer(lr=1.0)
    assert [c["lr"] for c in steering.take()] == [0.001 * (i + 1) for i in range(QUEUE_SIZE)]
    steering.steer(lr=1.0)  # taken: room again
    assert steering.take() == [{"lr": 1.0}]


def test_two_callers_steering_at_once_are_both_recorded_in_order():
    steering = Steering(size=1000)
    go = threading.Barrier(2)

    def send(name: str) -> None:
        go.wait()
        for i in range(200):
            steering.steer(prompt=f"{name} {i}")

    threads = [threading.Thread(target=send, args=(n,)) for n in ("cat", "dog")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = [c["prompt"] for c in steering.take()]
    assert len(taken) == 400
    for name in ("cat", "dog"):
        assert [p for p in taken if p.startswith(name)] == [f"{name} {i}" for i in range(200)]


def test_pause_holds_the_loop_until_resumed():
    steering = Steering()
    steering.pause()
    passed = threading.Event()
    t = threading.Thread(target=lambda: (steering.wait(), passed.set()))
    t.start()
    assert not passed.wait(0.1)
    steering.resume()
    assert passed.wait(5)
    t.join()


def entry_job(tiny_job, tmp_path, steer) -> dict:
    return {**job(tiny_job, tmp_path / "x"), "steer": steer}


@pytest.mark.parametrize("steer, message", [
    ([{"at": 12, "lr": 0.1}], r"steer\[0\]\.at: 12 is outside"), ([{"at": -1, "lr": 0.1}], "outside"),
    ([{"at": 5, "lr": 0.1}, {"at": 4, "lr": 0.2}], r"steer\[1\]\.at: 4 comes before"),
    ([{"at": 3, "lr": -1}], r"steer\[0\]\.lr"), ([{"at": 3, "lr": 0}], r"steer\[0\]\.lr"),
    ([{"at": 3, "prompt": "a:1|"}], "empty part"), ([{"at": 3}], "changes nothing"),
    ([{"at": 3, "colour": "red"}], "colour")])
def test_a_bad_steer_entry_is_refused(tiny_job, tmp_path, steer, message):
    with pytest.raises(VqclipError, match=message) as err:
        build_config(entry_job(tiny_job, tmp_path, steer))
    assert "\n" not in str(err.value)


def test_steer_entries_at_the_edges_and_at_one_step_are_accepted(tiny_job, tmp_path):
    steer = [{"at": 0, "lr": 0.2}, {"at": 6, "prompt": YELLOW}, {"at": 6, "lr": 1e-9}, {"at": 11, "lr": 0.05}]
    cfg = build_config(entry_job(tiny_job, tmp_path, steer))
    assert [e.at for e in cfg.steer] == [0, 6, 6, 11]


def test_a_steered_prompt_in_a_story_is_refused(tiny_job, tmp_path):
    with pytest.raises(VqclipError, match="story"):
        build_config({**entry_job(tiny_job, tmp_path, [{"at": 3, "prompt": YELLOW}]), "prompt": "a ^ b"})
    build_config({**entry_job(tiny_job, tmp_path, [{"at": 3, "lr": 0.05}]), "prompt": "a ^ b"})  # lr: fine


def test_vqclip_run_of_a_bad_steer_is_exit_2_and_one_line(tiny_job, tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(entry_job(tiny_job, tmp_path, [{"at": 3, "lr": -0.5}])))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "steer[0].lr" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_the_newest_entry_holds_from_its_step_and_the_prompt_is_rebuilt_only_when_it_changes():
    entries = [SteerEntry(2, lr=0.2), SteerEntry(4, prompt="b"), SteerEntry(5, lr=0.05), SteerEntry(7, prompt="b"),
               SteerEntry(8, prompt="a")]
    built = []
    steered = Steered(GenerateConfig(prompt="a", steer=entries, optimizer=OptimizerConfig(lr=0.1)),
                      lambda cfg: built.append(cfg.prompt) or cfg.prompt)
    objectives, objective = [], "start"
    for step in range(10):  # as the loop threads its objective through
        objective = steered.before(step, objective)
        objectives.append(objective)
    assert objectives == ["start"] * 4 + ["b"] * 4 + ["a"] * 2
    assert built == ["b", "a"]  # step 7's entry repeats the prompt in effect: nothing to rebuild
    want = [0.1, 0.1, 0.2, 0.2, 0.2, 0.05, 0.05, 0.05, 0.05, 0.05]  # each step's lr, the schedule constant at 0.1
    assert [steered.lr(step, 0.1) for step in range(10)] == pytest.approx(want)
    assert steered.lr(6, 0.04) == pytest.approx(0.04 * 0.05 / 0.1)  # a decaying schedule goes on from the new lr


def test_a_restyle_cannot_be_steered_yet_in_its_job_or_live(tiny_job, tmp_path):
    restyle = {**job(tiny_job, tmp_path / "r"), "restyle": {"input": "v.mp4"}}
    with pytest.raises(VqclipError, match="restyle cannot be steered"):
        build_config({**restyle, "steer": [{"at": 1, "lr": 0.05}]})
    with pytest.raises(VqclipError, match="restyle run cannot be steered"):
        generate(build_config(restyle), None, steering=Steering())


def test_steers_still_waiting_when_the_run_ends_are_said_not_applied(caplog):
    steering = Steering()
    steering.steer(lr=0.1)
    steering.steer(prompt=YELLOW)
    with caplog.at_level("WARNING", logger="vqclip"):
        steering.finish()
    assert "2 steers came after the run's last step and were not applied" in caplog.text
    assert steering.take() == [] and steering.finished


def test_a_zoom_steered_live_is_its_job_with_the_steers(tiny_job, tmp_path):
    zoom = {**job(tiny_job, tmp_path / "live", steps=6), "animation": {"mode": "zoom", "every": 2, "zoom": 1.1}}
    steering = Steering()
    live = run_job(build_config(zoom), steering=steering,
                   extra_callbacks=[lambda e: steering.steer(prompt=YELLOW) if e.step == 2 else None])
    assert steering.entries == [{"at": 3, "prompt": YELLOW}]
    given = {**zoom, "steer": [{"at": 3, "prompt": YELLOW}], "output": {**zoom["output"], "dir": str(tmp_path / "j")}}
    assert np.array_equal(pixels(run_job(build_config(given)).final), pixels(live.final))
