"""The page's run queue against what it promises, with a stand-in run the test drives (no model runs: fast): one
worker per physical device, first in first out and one job at a time on each, devices side by side; a failed job
is reported and the next one runs; cancel, stop and close keep their promises; progress reaches the watchers."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from vqclip.errors import VqclipError
from vqclip.optim.loop import StepEvent
from vqclip.runs import queue as q
from vqclip.runs.jobs import build_config


class Runs:
    """A stand-in for `run_job`: the job named by its prompt runs until the test lets it end (or its stop flag is
    set); 'fail...' prompts raise. Records starts and ends, and which worker thread ran each."""

    def __init__(self):
        self.gates: dict[str, threading.Event] = {}
        self.log: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def __call__(self, cfg, cache=None, stop=None, extra_callbacks=(), steering=None):
        name = cfg.prompt
        self.log.append(("start", name, threading.current_thread().name))
        while not self.gate(name).wait(0.005) and not stop.is_set():
            pass
        self.log.append(("end", name, threading.current_thread().name))
        if name == "fail-vqclip":
            raise VqclipError("fail-vqclip: a one-line reason")
        if name == "fail-bug":
            raise KeyError("bug")
        Path(cfg.output.dir).mkdir(parents=True)
        return SimpleNamespace(dir=Path(cfg.output.dir), interrupted=stop.is_set())

    def started(self, name: str) -> bool:
        return ("start", name) in [(e, n) for e, n, _ in self.log]

    def thread_of(self, name: str) -> str:
        return next(t for e, n, t in self.log if n == name)

    def order(self) -> list[str]:
        return [n for e, n, _ in self.log if e == "start"]


def wait_for(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def runs(monkeypatch, tmp_path, tiny_job):
    """A queue on the stand-in runs, whose device names all exist (cuda ones too: no CUDA is touched)."""
    monkeypatch.setattr(q, "pick_device", lambda name: torch.device("cpu" if name == "auto" else name))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    fake = Runs()
    queue = q.RunQueue(tmp_path / "outputs", cache=object(), run=fake)
    plans = {}

    def submit(name: str, device: str = "cpu"):
        if (name, device) not in plans:
            plans[name, device] = build_config(base=[("job", {**tiny_job, "prompt": name, "device": device})])
        return queue.submit(plans[name, device])

    yield SimpleNamespace(queue=queue, fake=fake, submit=submit, outputs=tmp_path / "outputs")
    for gate in fake.gates.values():
        gate.set()
    queue.close(timeout=10)


def test_one_device_runs_its_jobs_one_at_a_time_in_order_beside_another_device(runs):
    a1, a2, a3 = (runs.submit(n) for n in ("a1", "a2", "a3"))
    b1 = runs.submit("b1", "cuda:1")
    c1, c2 = runs.submit("c1", "cuda"), runs.submit("c2", "cuda:0")  # one physical device: one worker
    wait_for(lambda: runs.fake.started("a1") and runs.fake.started("b1") and runs.fake.started("c1"))
    assert (a1.state, a2.state, b1.state) == (q.RUNNING, q.QUEUED, q.RUNNING)
    assert [runs.queue.position(j) for j in (a1, a2, a3, b1, c1, c2)] == [0, 1, 2, 0, 0, 1]
    assert (a1.device, b1.device, c1.device, c2.device) == ("cpu", "cuda:1", "cuda:0", "cuda:0")
    for name in ("a3", "a2", "c2"):  # a later job let go first still waits for its turn
        runs.fake.gate(name).set()
    assert runs.queue.position(a3) == 2
    runs.fake.gate("a1").set()
    runs.fake.gate("c1").set()
    for job in (a1, a2, a3, c1, c2):
        assert runs.queue.wait(job, 10) and job.state == q.DONE
    assert b1.state == q.RUNNING  # its device's job is not done: the others did not wait for it
    order = runs.fake.order()
    assert [n for n in order if n[0] == "a"] == ["a1", "a2", "a3"] and order.index("c2") > order.index("c1")
    assert a1.ended <= a2.started and a2.ended <= a3.started and c1.ended <= c2.started
    assert runs.fake.thread_of("a1") == runs.fake.thread_of("a3") != runs.fake.thread_of("b1")
    assert runs.fake.thread_of("c1") == runs.fake.thread_of("c2")
    assert [j.id for j in runs.queue.jobs()] == [j.id for j in (a1, a2, a3, b1, c1, c2)]
    assert a3.dir.parent == runs.outputs and a3.dir.is_dir() and "a3" in a3.dir.name


def test_a_failed_job_is_reported_and_the_next_one_runs(runs):
    jobs = [runs.submit(n) for n in ("fail-vqclip", "fail-bug", "after")]
    for name in ("fail-vqclip", "fail-bug", "after"):
        runs.fake.gate(name).set()
    for job in jobs:
        assert runs.queue.wait(job, 10)
    assert [(j.state, j.error) for j in jobs] == [(q.FAILED, "fail-vqclip: a one-line reason"),
                                                  (q.FAILED, "'bug'"), (q.DONE, None)]
    assert jobs[2].dir is not None and jobs[0].dir is None


def test_cancel_drops_a_queued_job_and_stops_a_running_one_which_keeps_its_folder(runs):
    first, second, third = (runs.submit(n) for n in ("first", "second", "third"))
    wait_for(lambda: runs.fake.started("first"))
    version = second.version
    assert runs.queue.cancel(second.id) is second and second.state == q.CANCELLED and second.version > version
    assert runs.queue.position(third) == 1
    assert runs.queue.cancel(first.id) is first  # running: stopped at the end of its step
    assert runs.queue.wait(first, 10) and first.state == q.STOPPED and first.dir.is_dir()
    runs.fake.gate("third").set()
    assert runs.queue.wait(third, 10) and third.state == q.DONE
    assert not runs.fake.started("second") and second.dir is None
    assert sorted(p.name for p in runs.outputs.iterdir()) == sorted([first.dir.name, third.dir.name])
    assert runs.queue.cancel(third.id).state == q.DONE and runs.queue.cancel("j999") is None


def test_close_cancels_what_waits_stops_what_runs_and_takes_no_more(runs):
    running, waiting = runs.submit("running"), runs.submit("waiting")
    wait_for(lambda: runs.fake.started("running"))
    runs.queue.close(timeout=10)
    assert (running.state, waiting.state) == (q.STOPPED, q.CANCELLED) and not runs.fake.started("waiting")
    with pytest.raises(VqclipError, match="the server is stopping and takes no more jobs"):
        runs.submit("late")


def test_progress_gives_steps_loss_rate_time_left_and_a_preview_at_most_every_half_second(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(q.time, "perf_counter", lambda: now[0])
    job = q.Job("j1", 1, None, "cpu", "p")
    changes = []
    feed = q.Progress(job, lambda: changes.append(job.step))
    image = torch.zeros(1, 3, 4, 4)
    for step, t in ((0, 0.0), (1, 0.1), (2, 0.2), (3, 0.6), (4, 1.0)):
        now[0] = 100.0 + t
        feed(StepEvent(step, 5, 2.0 - step / 10, image=image))
        if step == 1:
            assert job.preview_step == 0  # 0.1 s after the first preview: none yet
    assert changes == [1, 2, 3, 4, 5] and (job.step, job.total) == (5, 5) and job.curve == [2.0, 1.9, 1.8, 1.7, 1.6]
    assert job.rate == pytest.approx(4 / 1.0) and job.eta == pytest.approx(0.0)
    assert job.preview_step == 4 and job.preview.startswith(b"\x89PNG")  # the last step always shows
    now[0] = 102.0
    feed(StepEvent(0, 3, 1.0, trial=2))  # best of n's trial steps: counted afresh
    now[0] = 102.5
    feed(StepEvent(1, 3, 1.0, trial=2))
    assert job.trial == 2 and job.rate == pytest.approx(1 / 0.5) and job.eta == pytest.approx(1 / 2.0)
