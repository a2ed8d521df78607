"""Steering a run while it goes: changes (a new prompt, a new learning rate) sent from any thread to a `Steering`, taken
by the loop at the start of the next step and recorded there as a `steer:` entry of the job, so that running the
recorded job replays the steered run exactly; and pause, which waits between steps without touching the state.

A steer is a keyframe of the job's settings: from step `at` on, the job runs as if its prompt (or lr) had been the
entry's. The objective is rebuilt from that job when the prompt changes (the same build in the live run, its replay
and its resume), and the lr schedule goes on from the new lr."""

from __future__ import annotations

import collections
import logging
import math
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

from ..errors import VqclipError, shown
from .prompts import check_has_target, parse_job_prompts

log = logging.getLogger("vqclip")

STEER_KEYS = ("prompt", "lr")  # what a steer may change (the `steer:` entry's keys besides `at`)
QUEUE_SIZE = 64  # steers waiting for the next step at most; one more is refused, never dropped


def check_change(change: dict, where: str = "steer", negative: tuple = (), images: tuple = ()) -> dict:
    """A steer's changes checked: known keys only, a prompt that parses and (with the job's `negative` and `images`)
    has something to aim at, a finite lr > 0; a one-line error naming `where` otherwise. Returns them without Nones."""
    for key in change:
        if key not in STEER_KEYS:
            raise VqclipError(f"{where}: unknown key {shown(key)}; a steer changes {', '.join(STEER_KEYS)}")
    out = {k: v for k, v in change.items() if v is not None and v != ""}
    if not out:
        raise VqclipError(f"{where}: changes nothing; give a prompt or an lr")
    if "prompt" in out:
        if not isinstance(out["prompt"], str):
            raise VqclipError(f"{where}.prompt: expected a text, got {shown(out['prompt'])}")
        check_has_target(parse_job_prompts(out["prompt"], list(negative), list(images)))
    if "lr" in out:
        lr = out["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise VqclipError(f"{where}.lr: expected a learning rate > 0, got {shown(lr)}")
        out["lr"] = float(lr)
    return out


def check_entries(entries: list, steps: int) -> None:
    """A job's `steer:` list: each entry's step in [0, steps), the steps in order (several at one step apply in
    order), and its changes as `check_change` wants them."""
    last = 0
    for i, e in enumerate(entries):
        where = f"steer[{i}]"
        if not 0 <= e.at < steps:
            raise VqclipError(f"{where}.at: {e.at} is outside the run's steps 0..{steps - 1}; a steer takes effect at "
                              "the start of a step of the run")
        if e.at < last:
            raise VqclipError(f"{where}.at: {e.at} comes before the entry above it (step {last}); list steers in the "
                              "order of their steps")
        last = e.at
        check_change({"prompt": e.prompt, "lr": e.lr}, where)


@dataclass
class BranchRequest:
    """A branch waiting for the next step: its checked `changes`, whether the parent then stops, and the Future that
    gets the child's folder."""

    changes: dict
    stop: bool = False
    future: Future = field(default_factory=Future)


# the pipeline's writer of a branch's folder: (step, the parent's entries before it, the changes, the parent's state
# at the start of that step as `RunState.state_dict()`) -> the child's folder
BranchWriter = Callable[[int, list, dict, dict], Any]


class Steering:
    """A run's steering wheel, safe to use from any thread: `steer(prompt=..., lr=...)` queues a change for the start
    of the next step (at most `size` wait; one more is an error), `pause()` / `resume()` hold the run between steps,
    `branch(...)` forks a new run there. `entries` is the run's record: every change taken, as `{at, prompt?, lr?}`,
    in order; `on_record` (set by the pipeline) is told the whole record after each change is taken, `on_branch`
    (likewise) writes a branch's folder. Once the run ends, a steer, pause or branch is an error."""

    def __init__(self, size: int = QUEUE_SIZE):
        self.size = size
        self.entries: list[dict] = []
        self.on_record: Optional[Callable[[list[dict]], None]] = None
        self.on_branch: Optional[BranchWriter] = None
        self._lock = threading.Lock()
        self._queue: collections.deque = collections.deque()
        self._go = threading.Event()
        self._go.set()
        self._finished = False

    def steer(self, **change: Any) -> None:
        """Queue a change (`prompt`, `lr`) for the start of the next step; checked now, so a bad one leaves the run
        as it is."""
        change = check_change(change)
        with self._lock:
            self._refuse_when_finished("steer")
            if len(self._queue) >= self.size:
                raise VqclipError(f"steer: {self.size} changes are already waiting for the next step; wait for the "
                                  "run to take them, then steer again")
            self._queue.append(change)

    def branch(self, stop: bool = False, **changes: Any) -> Future:
        """Fork the run at the start of its next step into a new run folder beside its own (its name + "-b1", "-b2",
        ...) whose job is this run's with `changes` (checked now, as a steer's) from that step and whose start is
        this run's state then; with `stop`, this run stops at the end of that step. The Future's result is the
        child's folder (a Path), or the error that kept it from being written."""
        request = BranchRequest(check_change(changes, "branch"), bool(stop))
        with self._lock:
            self._refuse_when_finished("branch")
            if len(self._queue) >= self.size:
                raise VqclipError(f"branch: {self.size} changes are already waiting for the next step; wait for the "
                                  "run to take them, then branch again")
            self._queue.append(request)
        return request.future

    def pause(self) -> None:
        """Hold the run at the start of its next step until `resume()`."""
        with self._lock:
            self._refuse_when_finished("pause")
            self._go.clear()

    def resume(self) -> None:
        """Let a paused run go on (named for the page's Continue; a killed run is resumed by `vqclip resume`)."""
        self._go.set()

    @property
    def paused(self) -> bool:
        return not self._go.is_set()

    @property
    def finished(self) -> bool:
        return self._finished

    def take(self) -> list[dict]:
        """The changes waiting, oldest first, now taken (the loop's call at the start of a step)."""
        with self._lock:
            out = list(self._queue)
            self._queue.clear()
            return out

    def wait(self) -> None:
        """Block while paused (the loop's call at the start of a step)."""
        while not self._go.wait(0.05):
            if self._finished:
                return

    def finish(self) -> None:
        """The run has ended: later steers are errors; changes still waiting were never applied, which is said."""
        with self._lock:
            self._finished = True
            left = len(self._queue)
            waiting = list(self._queue)
            self._queue.clear()
        self._go.set()
        for request in waiting:
            if isinstance(request, BranchRequest):
                request.future.set_exception(VqclipError("branch: the run ended before its next step, so there is "
                                                         "nothing to branch from; branch a finished run with "
                                                         "`vqclip branch RUN --at STEP`"))
        if left:
            log.warning("%d steer%s came after the run's last step and %s not applied", left, "" if left == 1 else "s",
                        "was" if left == 1 else "were")

    def _refuse_when_finished(self, what: str) -> None:
        if self._finished:
            raise VqclipError(f"{what}: the run has finished; start a new run (or branch from its job.yaml)")


class Steered:
    """The loop's side of steering: the job's `steer:` entries and a live `Steering`'s changes applied at the start
    of each step. `build(cfg)` makes the objective of a job; it is called when the prompt in effect changes."""

    def __init__(self, cfg, build: Callable[[Any], Any], steering: Optional[Steering] = None):
        self.cfg, self.build, self.steering = cfg, build, steering
        self.entries = [{"at": e.at, **check_change({"prompt": e.prompt, "lr": e.lr})} for e in cfg.steer]
        self.prompt = cfg.prompt  # the prompt the objective in hand was built for
        self.stopping = False  # a branch with stop=True was taken: the run stops at the end of this step
        if steering is not None:
            steering.entries = [dict(e) for e in self.entries]

    def before(self, step: int, objective, state=None):
        """Wait while paused, write the branches sent meanwhile from `state` (the `RunState` at the start of `step`),
        record the changes sent meanwhile as entries at `step`, and return the objective of the job as of `step`
        (rebuilt when its prompt differs from the one in hand)."""
        if self.steering is not None:
            self.steering.wait()
            taken = self.steering.take()
            branches = [t for t in taken if isinstance(t, BranchRequest)]
            if branches:
                taken = [t for t in taken if not isinstance(t, BranchRequest)]
                self.branch(step, branches, state)
            if taken:
                self.entries += [{"at": step, **change} for change in taken]
                self.entries.sort(key=lambda e: e["at"])  # stable: taken after any of the job's own at this step
                self.steering.entries = [dict(e) for e in self.entries]
                if self.steering.on_record is not None:
                    self.steering.on_record(self.steering.entries)
        prompt = self.value_at(step, "prompt", self.cfg.prompt)
        if prompt != self.prompt:
            objective, self.prompt = self.build(replace(self.cfg, prompt=prompt)), prompt
        return objective

    def branch(self, step: int, requests: list[BranchRequest], state) -> None:
        """Each request's child written by the pipeline's `on_branch` from the state at the start of `step` and the
        entries that took effect before it; its Future gets the child's folder, or the error (the run goes on)."""
        past = [dict(e) for e in self.entries if e["at"] < step]
        saved = state.state_dict() if state is not None else None  # once for all: taken in the run's RNG context
        for request in requests:
            try:
                if self.steering.on_branch is None or saved is None:
                    raise VqclipError("branch: this run has no run folder to branch beside; run it into a folder "
                                      "(`Pipeline.run(..., steer=Steering())`, `vqclip run`) to branch it")
                child = self.steering.on_branch(step, past, dict(request.changes), saved)
            except Exception as exc:  # handed to the Future's holder; the parent run goes on
                request.future.set_exception(exc)
            else:
                request.future.set_result(child)
                self.stopping = self.stopping or request.stop

    def lr(self, step: int, scheduled: float) -> float:
        """The lr of `step`: the schedule's `scheduled`, scaled by the newest lr entry over the job's own lr."""
        lr = self.value_at(step, "lr", None)
        return scheduled if lr is None else scheduled * (lr / self.cfg.optimizer.lr)

    def value_at(self, step: int, key: str, default):
        """The newest entry's `key` at or before `step`, else `default`."""
        out = default
        for e in self.entries:
            if e["at"] > step:
                break
            if key in e:
                out = e[key]
        return out
