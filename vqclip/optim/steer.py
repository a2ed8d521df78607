"""Steering a run while it goes: changes (a new prompt, negatives, image prompts, guide weight, edit mask or learning
rate) sent from any thread to a `Steering`, taken by the loop at the start of the next step and recorded there as a
`steer:` entry of the job, so that running the recorded job replays the steered run exactly; and pause, which waits
between steps without touching the state.

A steer is a keyframe of the job's settings: from step `at` on, the job runs as if its prompt (negatives, image
prompts, guide weight, mask, lr) had been the entry's. The objective is rebuilt from that job when what shapes it
changes (the same build in the live run, its replay and its resume), and the lr schedule goes on from the new lr.
Best of n: a steer sent during the trials takes effect at the first step after the pick (the trials' starts are
scored on the job's own prompts), and a job's `steer:` entry may not fall inside the trials."""

from __future__ import annotations

import collections
import logging
import math
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import VqclipError, missing, shown
from ..files.images import open_rgb
from .prompts import check_has_target, parse_image_prompt, parse_job_prompts, parse_negatives, parse_prompts
from .schedules import STORY_SEPARATOR

log = logging.getLogger("vqclip")

STEER_KEYS = ("prompt", "lr", "negative", "images", "guide_weight", "mask")  # the `steer:` entry's keys besides `at`
SHAPES = ("prompt", "negative", "images", "guide_weight", "mask")  # the keys whose change rebuilds the objective
QUEUE_SIZE = 64  # steers waiting for the next step at most; one more is refused, never dropped


def job_at(cfg, values: dict):
    """The job `cfg` with steered `values` ({prompt?, negative?, images?, guide_weight?, mask?}) in effect."""
    out = replace(cfg, prompt=values.get("prompt", cfg.prompt), negative=list(values.get("negative", cfg.negative)),
                  image_prompts=list(values.get("images", cfg.image_prompts)))
    if "guide_weight" in values:
        out = replace(out, guide=replace(out.guide, weight=values["guide_weight"]))
    if "mask" in values:
        out = replace(out, init=replace(out.init, mask=values["mask"]))
    return out


def entry_change(entry) -> dict:
    """A `SteerEntry`'s changes as `check_change` takes them (its unset keys as None)."""
    return {key: getattr(entry, key) for key in STEER_KEYS}


def _texts(value, where: str) -> list[str]:
    """A list of texts (negatives, image prompts), else a one-line error naming `where`."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in value):
        raise VqclipError(f"{where}: expected a list of texts ([] clears them), got {shown(value)}")
    return list(value)


def _image(path: str, where: str) -> None:
    """An image file the run reads, checked as the job checks its files: there, and a readable image."""
    if not Path(path).is_file():
        raise VqclipError(f"{where}: {missing(path, 'image file')}; check the path")
    try:
        open_rgb(path)
    except VqclipError as exc:
        raise VqclipError(f"{where}: {exc}") from None


def check_files(change: dict, where: str) -> None:
    """A change's image prompts and mask, checked as the job checks its files: there, readable images, and a mask
    not all black."""
    for i, item in enumerate(change.get("images") or []):
        _image(parse_image_prompt(item).text, f"{where}.images[{i}]")
    if change.get("mask"):
        _image(change["mask"], f"{where}.mask")
        if open_rgb(change["mask"]).convert("L").getextrema()[1] == 0:
            raise VqclipError(f"{where}.mask: {shown(change['mask'])} is all black, so nothing may change; paint white "
                              "where the image may change")


def check_change(change: dict, where: str = "steer", job=None, files: bool = True) -> dict:
    """A steer's changes checked: known keys only, a prompt and negatives that parse, image prompts and a mask that
    are readable images (with `files`), a guide weight >= 0 and a finite lr > 0; with the `job` in effect, no story
    (its keyframes set the targets: only its lr may be steered), a guide to weigh and an image to mask, and something
    to aim at (else the change's own prompt must aim at something).
    A one-line error naming `where` otherwise. Returns the changes without Nones ([] clears negatives or images)."""
    for key in change:
        if key not in STEER_KEYS:
            raise VqclipError(f"{where}: unknown key {shown(key)}; a steer changes {', '.join(STEER_KEYS)}")
    out = {k: v for k, v in change.items() if v is not None and v != ""}
    if not out:
        raise VqclipError(f"{where}: changes nothing; give one of {', '.join(STEER_KEYS)}")
    shaping = [k for k in out if k in SHAPES]
    if job is not None and shaping and (job.story or STORY_SEPARATOR in job.prompt):
        raise VqclipError(f"{where}.{shaping[0]}: this run tells a story, whose keyframes set what it aims at; steer "
                          "its lr only, or drop the story")
    if "prompt" in out:
        if not isinstance(out["prompt"], str):
            raise VqclipError(f"{where}.prompt: expected a text, got {shown(out['prompt'])}")
        parse_prompts(out["prompt"])
    if "negative" in out:
        out["negative"] = _texts(out["negative"], f"{where}.negative")
        parse_negatives(out["negative"])
    if "images" in out:
        out["images"] = _texts(out["images"], f"{where}.images")
        for item in out["images"]:
            parse_image_prompt(item)
    if "guide_weight" in out:
        w = out["guide_weight"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise VqclipError(f"{where}.guide_weight: expected a weight >= 0 (0: no guidance), got {shown(w)}")
        out["guide_weight"] = float(w)
        if job is not None and not job.guide.model:
            raise VqclipError(f"{where}.guide_weight: this run has no classifier guide (guide.model); set one in the "
                              "job to weigh it")
    if "mask" in out:
        if not isinstance(out["mask"], str):
            raise VqclipError(f"{where}.mask: expected the path of a mask image, got {shown(out['mask'])}")
        if job is not None and not job.init.image:
            raise VqclipError(f"{where}.mask: a mask edits init.image, and this run has none; start the run from an "
                              "image (init.image) to mask it")
    if files:
        check_files(out, where)
    if "lr" in out:
        lr = out["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise VqclipError(f"{where}.lr: expected a learning rate > 0, got {shown(lr)}")
        out["lr"] = float(lr)
    if job is not None and shaping:  # (an lr leaves the targets as they were)
        steered = job_at(job, out)
        check_has_target(parse_job_prompts(steered.prompt, steered.negative, steered.image_prompts))
    elif "prompt" in out:
        check_has_target(parse_job_prompts(out["prompt"], out.get("negative", []), out.get("images", [])))
    return out


def shaped(entries: list[dict], step: Optional[int] = None) -> dict:
    """The newest value of each key of `SHAPES` among `entries` (those at or before `step`; None: all)."""
    out: dict = {}
    for e in entries:
        if step is not None and e["at"] > step:
            break
        out.update((k, v) for k, v in e.items() if k in SHAPES)
    return out


def check_entries(entries: list, steps: int, job=None, first: int = 0) -> None:
    """A job's `steer:` list: each entry's step in [first, steps) (`first`: the first step after best-of-n's
    trials), the steps in order (several at one step apply in order), and its changes as `check_change` wants them
    (files are the job's input check's), each with the `job` as the entries above it left it."""
    last, values = 0, {}
    for i, e in enumerate(entries):
        where = f"steer[{i}]"
        if not 0 <= e.at < steps:
            raise VqclipError(f"{where}.at: {e.at} is outside the run's steps 0..{steps - 1}; a steer takes effect at "
                              "the start of a step of the run")
        if e.at < first:
            raise VqclipError(f"{where}.at: {e.at} falls in best-of-n's trials (steps 0..{first - 1}); a steer takes "
                              f"effect after the pick, from step {first}")
        if e.at < last:
            raise VqclipError(f"{where}.at: {e.at} comes before the entry above it (step {last}); list steers in the "
                              "order of their steps")
        last = e.at
        change = check_change(entry_change(e), where, None if job is None else job_at(job, values), files=False)
        values.update((k, v) for k, v in change.items() if k in SHAPES)


def check_steer_files(entries: list) -> None:
    """The files a job's `steer:` entries read (image prompts, masks), checked as a live steer's are."""
    for i, e in enumerate(entries):
        check_files({"images": e.images, "mask": e.mask}, f"steer[{i}]")


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
        self.on_take: Optional[Callable[[dict], None]] = None  # told each change as it is taken (a vocabulary notice)
        self.job = None  # the run's job (set when it starts): a steer is checked against it and the changes before
        self._lock = threading.Lock()
        self._queue: collections.deque = collections.deque()
        self._go = threading.Event()
        self._go.set()
        self._finished = False

    def steer(self, **change: Any) -> None:
        """Queue a change (any of `STEER_KEYS`) for the start of the next step; checked now (against the job as the
        changes before it leave it, once the run has started), so a bad one leaves the run as it is."""
        with self._lock:
            self._refuse_when_finished("steer")
            job = self._job_now()
            change = check_change(change, job=job)
            if len(self._queue) >= self.size:
                raise VqclipError(f"steer: {self.size} changes are already waiting for the next step; wait for the "
                                  "run to take them, then steer again")
            self._queue.append(change)

    def branch(self, stop: bool = False, **changes: Any) -> Future:
        """Fork the run at the start of its next step into a new run folder beside its own (its name + "-b1", "-b2",
        ...) whose job is this run's with `changes` (checked now, as a steer's) from that step and whose start is
        this run's state then; with `stop`, this run stops at the end of that step. The Future's result is the
        child's folder (a Path), or the error that kept it from being written."""
        with self._lock:
            self._refuse_when_finished("branch")
            request = BranchRequest(check_change(changes, "branch", job=self._job_now()), bool(stop))
            if len(self._queue) < self.size:  # one queue with the steers: all taken in the order they came
                self._queue.append(request)
                return request.future
        raise VqclipError(f"branch: {self.size} changes are already waiting for the next step; wait for the run to "
                          "take them, then branch again")

    def _job_now(self):
        """The job as the changes taken and those still waiting leave it (None before the run starts); under the lock."""
        if self.job is None:
            return None
        return job_at(self.job, shaped([*self.entries, *(q for q in self._queue if isinstance(q, dict))]))

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
    of each step from `first` on (best-of-n's trials end there; before it, only a pause holds the run). `build(cfg)`
    makes the objective of a job; it is called when what shapes the objective (`SHAPES`) changes."""

    def __init__(self, cfg, build: Callable[[Any], Any], steering: Optional[Steering] = None, first: int = 0):
        self.cfg, self.build, self.steering, self.first = cfg, build, steering, first
        if first:
            check_entries(cfg.steer, cfg.steps, first=first)
        self.entries = [{"at": e.at, **check_change(entry_change(e), files=False)} for e in cfg.steer]
        self.shape = self.shape_of(cfg)  # what the objective in hand was built for
        self.objective = None  # the objective last in effect (the final image is decoded by it: e.g. a steered mask)
        self.stopping = False  # a branch with stop=True was taken: the run stops at the end of this step
        if steering is not None:
            steering.entries = [dict(e) for e in self.entries]
            steering.job = cfg

    @staticmethod
    def shape_of(cfg) -> tuple:
        """What of a job shapes its objective and a steer may change."""
        return cfg.prompt, tuple(cfg.negative), tuple(cfg.image_prompts), cfg.guide.weight, cfg.init.mask

    def before(self, step: int, objective, state=None):
        """Wait while paused, write the branches sent meanwhile from `state` (the `RunState` at the start of `step`),
        record the changes sent meanwhile as entries at `step` (both from `first` on), and return the objective of the
        job as of `step` (rebuilt when what shapes it differs from the one in hand)."""
        if self.steering is not None:
            self.steering.wait()
            taken = self.steering.take() if step >= self.first else []
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
                for change in taken if self.steering.on_take is not None else ():
                    self.steering.on_take(change)
        values = shaped(self.entries, step)
        job = job_at(self.cfg, values) if values else self.cfg
        if self.shape_of(job) != self.shape:
            objective, self.shape = self.build(job), self.shape_of(job)
        self.objective = objective
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
