"""The queue's steering with stand-in runs (no model runs: fast): a single image's run gets a Steering handed to its
run, a batch none; a branch waits for its parent to write its folder, is then queued to resume that folder with a
Steering of its own, and fails (or is cancelled) cleanly when its parent ends first; Stop and close end a paused run;
a job that fails before its run began refuses later steers."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_queue import runs, wait_for  # noqa: F401  (the stand-in queue fixture)

from vqclip.errors import VqclipError
from vqclip.optim.steer import Steering
from vqclip.runs import queue as q
from vqclip.runs.jobs import build_config
from vqclip.runs.plan import plan as plan_jobs


class Wheel(Steering):
    """A Steering whose `branch` answers with a Future the test resolves (the loop's side is the branch engineer's)."""

    def __init__(self):
        super().__init__()
        self.branches: list[tuple[bool, dict, Future]] = []

    def branch(self, stop: bool = False, **changes) -> Future:
        if "prompt" in changes and not changes["prompt"]:
            raise VqclipError("branch: changes nothing")
        future: Future = Future()
        self.branches.append((stop, changes, future))
        return future


@pytest.fixture
def steered(runs, monkeypatch):  # noqa: F811
    """The stand-in queue, whose runs record the Steering they were given, and a stand-in resume."""
    given, resumed = {}, []
    run = runs.fake.__call__

    def fake_run(cfg, cache=None, stop=None, extra_callbacks=(), steering=None):
        given[cfg.prompt] = steering
        return run(cfg, cache, stop, extra_callbacks)

    def fake_resume(folder, cache=None, stop=None, extra_callbacks=(), steering=None):
        resumed.append((Path(folder), steering))
        gate = runs.fake.gate(f"resume {Path(folder).name}")
        while not gate.wait(0.005) and not stop.is_set():
            pass
        return SimpleNamespace(dir=Path(folder), interrupted=stop.is_set())

    runs.queue._run, runs.queue._resume = fake_run, fake_resume
    return SimpleNamespace(**vars(runs), given=given, resumed=resumed)


def test_a_single_images_run_is_given_its_steering_and_a_batch_none(steered, tiny_job):
    one = steered.submit("one")
    [plan] = plan_jobs([("job", {**tiny_job, "prompt": "batch", "n": 2})])
    batch = steered.queue.submit(plan)
    assert one.steering is not None and batch.steering is None
    assert one.summary()["steerable"] is True and batch.summary()["steerable"] is False
    steered.queue.cancel(batch.id)
    wait_for(lambda: "one" in steered.given)
    assert steered.given["one"] is one.steering
    one.steering.pause()
    assert one.summary()["paused"] is True
    assert steered.queue.cancel(one.id) is one  # Stop: a paused run is let go, to reach the end of its step
    assert not one.steering.paused
    assert steered.queue.wait(one, 10) and one.state == q.STOPPED and one.steering.finished


def test_a_branch_waits_for_its_folder_then_resumes_it_steerable(steered):
    parent = steered.submit("parent")
    wait_for(lambda: "parent" in steered.given)
    parent.steering = wheel = Wheel()  # the run's wheel, answering branches as the test says
    parent.step = 7
    child = steered.queue.branch(parent, stop=True, prompt="a yellow circle")
    [(stop, changes, future)] = wheel.branches
    assert (stop, changes) == (True, {"prompt": "a yellow circle"})
    assert child.state == q.BRANCHING and child.parent == parent.id and child.prompt == "a yellow circle"
    assert child.steering is not None and child.steering is not wheel and child.device == parent.device
    assert steered.queue.position(child) == 0 and child.summary()["parent"] == parent.id
    version = child.version
    folder = steered.outputs / "parent-b1"
    folder.mkdir(parents=True)
    future.set_result(folder)  # the parent wrote the branch's folder: the child is queued to resume it
    assert child.state == q.QUEUED and child.resume == folder and child.version > version
    steered.fake.gate("parent").set()
    wait_for(lambda: steered.resumed)
    assert steered.resumed == [(folder, child.steering)]
    child.steering.steer(lr=0.5)  # steerable as any run
    steered.fake.gate("resume parent-b1").set()
    assert steered.queue.wait(child, 10) and child.state == q.DONE and child.dir == folder
    assert child.steering.finished


def test_a_branch_its_parent_never_takes_fails_and_one_cancelled_is_not_resumed(steered):
    parent = steered.submit("parent")
    wait_for(lambda: "parent" in steered.given)
    parent.steering = wheel = Wheel()
    with pytest.raises(VqclipError, match="changes nothing"):  # checked at once: no child is made
        steered.queue.branch(parent, prompt="")
    assert [j.id for j in steered.queue.jobs()] == [parent.id]
    untaken = steered.queue.branch(parent, lr=0.1)
    cancelled = steered.queue.branch(parent, lr=0.2)
    assert steered.queue.cancel(cancelled.id) is cancelled and cancelled.state == q.CANCELLED
    assert cancelled.steering.finished
    wheel.branches[1][2].set_result(steered.outputs / "parent-b2")  # taken after the cancel: not queued
    assert cancelled.state == q.CANCELLED and cancelled.resume is None
    steered.fake.gate("parent").set()  # the parent ends without taking the other
    assert steered.queue.wait(parent, 10)
    wait_for(lambda: untaken.state == q.FAILED)
    assert untaken.error == "branch: the run ended before it took the branch" and untaken.steering.finished
    failed = steered.submit("again")
    wait_for(lambda: "again" in steered.given)
    failed.steering = wheel = Wheel()
    errored = steered.queue.branch(failed, lr=0.3)
    wheel.branches[0][2].set_exception(VqclipError("branch: no room left on the disk"))
    assert errored.state == q.FAILED and errored.error == "branch: no room left on the disk"
    assert steered.resumed == []
    steered.fake.gate("again").set()


def test_a_job_that_fails_before_its_run_refuses_later_steers_and_close_lets_a_paused_run_go(steered):
    failing = steered.submit("fail-vqclip")
    steered.fake.gate("fail-vqclip").set()
    assert steered.queue.wait(failing, 10) and failing.state == q.FAILED
    with pytest.raises(VqclipError, match="the run has finished"):
        failing.steering.steer(lr=0.1)
    running, waiting = steered.submit("running"), steered.submit("waiting")
    wait_for(lambda: "running" in steered.given)
    running.steering.pause()
    steered.queue.close(timeout=10)
    assert (running.state, waiting.state) == (q.STOPPED, q.CANCELLED) and not running.steering.paused
    with pytest.raises(VqclipError, match="the run has finished"):
        waiting.steering.steer(lr=0.1)


def test_the_prompt_in_effect_is_the_newest_steers_up_to_the_jobs_step(steered):
    job = q.Job("j1", 1, None, "cpu", "own", steering=Steering())
    job.steering.entries = [{"at": 0, "lr": 0.1}, {"at": 3, "prompt": "three"}, {"at": 9, "prompt": "nine"}]
    assert [job.__setattr__("step", s) or job.prompt_now() for s in (0, 2, 3, 8, 9)] == \
        ["own", "own", "three", "three", "nine"]


def test_a_jobs_story_keyframes_and_lr_are_listed_for_the_page(steered, tiny_job):
    story = [{"at": 0, "prompt": "a forest"}, {"at": 5, "prompt": "a city"}]
    plan = build_config(base=[("job", {**tiny_job, "prompt": "a forest", "story": story, "steps": 10,
                                       "optimizer": {"lr": 0.3}})])
    job = steered.queue.submit(plan)
    assert job.summary()["keyframes"] == [0, 5] and job.summary()["lr_now"] == 0.3
    job.steering.entries = [{"at": 2, "lr": 0.1}]
    job.step = 2
    assert job.summary()["lr_now"] == 0.1
    steered.queue.cancel(job.id)
