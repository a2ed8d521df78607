"""A run queue for servers: jobs run one at a time per device (a worker thread each, first in, first out) through the
one run path (`run_job`; a sweep or `n` images as `vqclip run` runs them, `vqclip.runs.plan`), with live progress for watchers; a queued job is
cancelled without leaving a folder, a running one is stopped at the end of its step and keeps what it made. torch is
imported with the first job (or `warm_up`), so a server that holds a queue starts in a moment."""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional

from ..config import GenerateConfig
from ..errors import VqclipError
from ..files.runfolder import default_run_dir
from ..nets.device import pick_device
from ..optim.steer import Steering
from .batch import Batch
from .plan import place, run_plan

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ..nets.load import ModelCache
    from ..optim.loop import StepEvent
    from .pipeline import RunResult

log = logging.getLogger("vqclip.queue")

QUEUED, RUNNING, DONE, STOPPED, FAILED, CANCELLED = "queued", "running", "done", "stopped", "failed", "cancelled"
BRANCHING = "branching"  # a branch waiting for its parent run to take it (then queued, to resume the branch's folder)
ENDED = (DONE, STOPPED, FAILED, CANCELLED)
PREVIEW_EVERY = 0.5  # seconds between preview PNGs at most (a PNG per step would cost a fast run time)
MAX_NOTES = 50  # notes kept per job (a run says a handful; a runaway one is cut, not stored without end)


def device_key(device) -> str:
    """One name per physical device ('cuda' and 'cuda:0' are one), so that no device runs two jobs at once."""
    if device.type == "cuda" and device.index is None:
        import torch  # already imported by pick_device; torch-free at module level like the rest of this module

        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


@dataclass
class Job:
    """One submitted job: its config (or batch), state, live progress and, once ended, its folder or error."""

    id: str
    seq: int  # submission order
    plan: GenerateConfig | Batch
    device: str
    prompt: str
    state: str = QUEUED
    submitted: float = field(default_factory=time.time)
    started: Optional[float] = None
    ended: Optional[float] = None
    step: int = 0
    total: int = 0
    loss: Optional[float] = None
    rate: Optional[float] = None  # steps per second
    eta: Optional[float] = None  # seconds left
    curve: list[float] = field(default_factory=list)
    preview: Optional[bytes] = None  # PNG of the latest image
    preview_step: int = -1
    dir: Optional[Path] = None  # the run (or batch) folder, once it ran
    error: Optional[str] = None
    notes: list[str] = field(default_factory=list)  # what the run said (vqclip's notes and warnings), in order
    trial: int = 0  # the starts of best-of-n trial steps being run, 0 for the run's own steps
    version: int = 0  # bumped on every change, so watchers send only what is new
    stop: threading.Event = field(default_factory=threading.Event)
    steering: Optional[Steering] = None  # a single image's run is steered with it (a batch or a restyle: None)
    first_step: Optional[int] = None  # the step of the curve's first loss (a resumed branch starts past 0)
    keyframes: list[int] = field(default_factory=list)  # the steps of the job's story keyframes
    parent: Optional[str] = None  # a branch: its parent job's id
    resume: Optional[Path] = None  # a branch: the folder it resumes (once its parent has written it)
    branched: Optional["Future"] = None  # a branch: its parent's `Steering.branch` answer

    def summary(self) -> dict:
        """What a listing shows of the job (no preview bytes, no curve): its steers, as its job.yaml records them, and
        whether it is paused."""
        steering = self.steering
        return {"id": self.id, "state": self.state, "prompt": self.prompt, "device": self.device,
                "step": self.step, "total": self.total, "loss": self.loss, "trial": self.trial, "rate": self.rate, "eta": self.eta,
                "dir": self.dir.name if self.dir else None, "error": self.error, "notes": list(self.notes),
                "submitted": self.submitted,
                "started": self.started, "ended": self.ended, "batch": isinstance(self.plan, Batch),
                "steerable": steering is not None, "paused": bool(steering and steering.paused),
                "steers": [dict(e) for e in steering.entries] if steering else [], "prompt_now": self.prompt_now(),
                "lr_now": self.lr_now(), "keyframes": list(self.keyframes), "first_step": self.first_step,
                "parent": self.parent}

    def prompt_now(self) -> str:
        """The prompt in effect at the job's step: its newest steer's that has one, else its own."""
        return self._now("prompt", self.prompt)

    def lr_now(self) -> Optional[float]:
        """The lr in effect at the job's step (its newest steer's, else its own; None for a batch)."""
        return self._now("lr", getattr(getattr(self.plan, "optimizer", None), "lr", None))

    def _now(self, key: str, default):
        steers = self.steering.entries if self.steering is not None else []
        return next((e[key] for e in reversed(steers) if key in e and e["at"] <= self.step), default)


class Progress:
    """The callback that feeds a job's live progress: step, loss, it/s, time left and a preview PNG at most every
    `PREVIEW_EVERY` seconds (and at the last step); best-of-n's trial steps too, shown as such."""

    trials = True

    def __init__(self, job: Job, changed: Callable[[], None]):
        self.job, self.changed = job, changed
        self.t0: Optional[float] = None
        self.s0 = 0
        self.shown = 0.0

    def __call__(self, event: "StepEvent") -> None:
        job, now = self.job, time.perf_counter()
        if self.t0 is None or event.step < self.s0:  # first step (or a new frame of a restyle, a new batch member)
            self.t0, self.s0 = now, event.step
        elif event.step > self.s0:
            job.rate = (event.step - self.s0) / (now - self.t0)
            job.eta = max(0, event.total - event.step - 1) / job.rate if job.rate > 0 else None
        if event.trial != job.trial:
            job.trial, self.t0, self.s0 = event.trial, now, event.step
        job.step, job.total, job.loss = event.step + 1, event.total, event.loss
        if not job.curve:
            job.first_step = event.step
        job.curve.append(event.loss)
        if event.image is not None and (now - self.shown >= PREVIEW_EVERY or event.step + 1 >= event.total):
            buffer = io.BytesIO()
            event.preview.save(buffer, format="PNG")
            job.preview, job.preview_step, self.shown = buffer.getvalue(), event.step, now
        self.changed()


class JobNotes(logging.Handler):
    """vqclip's notes and warnings logged by the thread that runs a job, kept on the job, so that a page shows what
    the terminal of a CLI run would (the vocabulary note, a missing background colour, ...)."""

    def __init__(self, job: Job, changed: Callable[[], None]):
        super().__init__(logging.INFO)
        self.job, self.changed, self.thread = job, changed, threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread or record.name == log.name or len(self.job.notes) >= MAX_NOTES:
            return
        prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        self.job.notes.append(prefix + record.getMessage())
        self.changed()


class RunQueue:
    """Jobs per device, each device's run one at a time in submission order, with a shared model cache.

    Args:
        outputs: the folder every run (or batch) folder is made in, as outputs/<time>-<prompt>.
        cache: loaded models shared by all jobs (each network loads once per device).
        run: the function that runs one job (default `run_job`; a benchmark or test may wrap it).
        resume: the function that continues a run folder, a branch's (default `resume_run`).
    """

    def __init__(self, outputs: Path, cache: Optional["ModelCache"] = None,
                 run: Optional[Callable[..., "RunResult"]] = None, resume: Optional[Callable[..., "RunResult"]] = None):
        self.outputs = Path(outputs)
        self.cache = cache
        self._run, self._resume = run, resume
        self._lock = threading.Condition()
        self._warm = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._listening = 0  # jobs whose notes are being kept (the vqclip logger passes INFO while there are any)
        self._level = logging.NOTSET

    def submit(self, plan: GenerateConfig | Batch, notes: Iterable[str] = ()) -> Job:
        """Queue a checked job (or batch) on its device, with the notes its check gave; returns it at once."""
        first = plan.members[0].cfg if isinstance(plan, Batch) else plan
        device = device_key(pick_device(first.device))
        with self._lock:
            if self._closed:
                raise VqclipError("job: the server is stopping and takes no more jobs")
            seq = next(self._ids)
            job = Job(f"j{seq}", seq, plan, device, plan.prompt, notes=list(notes)[:MAX_NOTES],
                      steering=Steering() if steerable(plan) else None, keyframes=[k.at for k in first.story])
            self._add(job)
        return job

    def branch(self, parent: Job, stop: bool = False, **changes) -> Job:
        """Branch a steered job's run at the start of its next step with `changes` (checked now, as a steer: a bad one
        is a VqclipError and the run goes on as it was); with `stop` the parent stops at the end of that step. Returns
        the branch's job at once: waiting (BRANCHING) until the parent writes its folder, then queued to resume it,
        steerable too; failed if the parent ends first."""
        if parent.steering is None:
            raise VqclipError(f"branch: job {parent.id} cannot be steered (a batch or a restyle), so not branched")
        future = parent.steering.branch(stop=stop, **changes)
        with self._lock:
            seq = next(self._ids)
            prompt = changes.get("prompt") or parent.prompt_now()
            job = Job(f"j{seq}", seq, parent.plan, parent.device, prompt, BRANCHING, steering=Steering(),
                      keyframes=list(parent.keyframes), parent=parent.id, branched=future)
            self._add(job)
        future.add_done_callback(lambda f: self._branched(job, f))
        return job

    def _add(self, job: Job) -> None:
        """Keep a new job and start its device's worker (the lock held)."""
        self._jobs[job.id] = job
        if job.device not in self._workers:
            worker = threading.Thread(target=self._work, args=(job.device,), daemon=True, name=f"vqclip-{job.device}")
            self._workers[job.device] = worker
            worker.start()
        self._lock.notify_all()

    def _branched(self, job: Job, future: "Future") -> None:
        """The parent took the branch (the child is queued to resume its folder) or ended before (the child failed)."""
        error = "the run ended before it took the branch" if future.cancelled() else future.exception()
        with self._lock:
            if job.state != BRANCHING:  # cancelled meanwhile: the folder stays, for `vqclip resume`
                return
            if error is None:
                job.resume, job.state = Path(future.result()), QUEUED
            else:
                text = str(error) or type(error).__name__
                job.state, job.ended = FAILED, time.time()
                job.error = text if text.startswith("branch") else f"branch: {text}"
                job.steering.finish()
            self._changed(job)

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job, in submission order."""
        with self._lock:
            return list(self._jobs.values())

    def position(self, job: Job) -> int:
        """Jobs ahead of this one on its device (the running one included); 0 when running or ended."""
        with self._lock:
            if job.state != QUEUED:
                return 0
            return sum(1 for j in self._jobs.values() if j.device == job.device and j.seq < job.seq
                       and j.state in (QUEUED, RUNNING))

    def cancel(self, job_id: str) -> Optional[Job]:
        """Cancel a queued job (it never starts) or stop a running one at the end of its step; None if unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.state in (QUEUED, BRANCHING):
                job.state, job.ended = CANCELLED, time.time()
                if job.steering is not None:
                    job.steering.finish()
                self._changed(job)
            elif job.state == RUNNING:
                job.stop.set()
                if job.steering is not None:
                    job.steering.resume()  # a paused run reaches the end of its step too
            return job

    def changed(self, job: Job) -> None:
        """Tell the job's watchers that it changed (a steer sent, a pause)."""
        self._notify(job)

    def wait(self, job: Job, timeout: Optional[float] = None) -> bool:
        """Block until the job has ended (or `timeout` seconds passed); whether it ended."""
        with self._lock:
            return self._lock.wait_for(lambda: job.state in ENDED, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Cancel what is queued, stop what runs, and wait for the workers."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                if job.state in (QUEUED, BRANCHING):
                    job.state, job.ended = CANCELLED, time.time()
                    if job.steering is not None:
                        job.steering.finish()
                elif job.state == RUNNING:
                    job.stop.set()
                    if job.steering is not None:
                        job.steering.resume()
            self._lock.notify_all()
            workers = list(self._workers.values())
        for worker in workers:
            worker.join(timeout)

    def warm_up(self) -> None:
        """Import the run path and make the model cache now (seconds of torch imports), not at the first job."""
        from ..nets.load import ModelCache  # torch: imported when runs are near, so the server answers at once
        from .pipeline import run_job  # (the same)
        from .resume import resume_run  # (the same)

        with self._warm:  # not the queue's lock: listings and submissions go on meanwhile
            self.cache = self.cache or ModelCache()
            self._run = self._run or run_job
            self._resume = self._resume or resume_run

    def _changed(self, job: Job) -> None:
        job.version += 1
        self._lock.notify_all()

    def _next(self, device: str) -> Optional[Job]:
        with self._lock:
            while True:
                job = next((j for j in self._jobs.values() if j.device == device and j.state == QUEUED), None)
                if job is not None:
                    job.state, job.started = RUNNING, time.time()
                    self._changed(job)
                    return job
                if self._closed:
                    return None
                self._lock.wait()

    @contextlib.contextmanager
    def _notes(self, job: Job) -> Iterator[None]:
        """Keep what vqclip logs in this thread on `job` while it runs (INFO included, whatever the terminal shows)."""
        logger, handler = logging.getLogger("vqclip"), JobNotes(job, lambda: self._notify(job))
        with self._lock:
            if self._listening == 0:
                self._level = logger.level
            self._listening += 1
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            with self._lock:
                self._listening -= 1
                if self._listening == 0:
                    logger.setLevel(self._level)

    def _work(self, device: str) -> None:
        while (job := self._next(device)) is not None:
            try:
                with self._notes(job):
                    job.dir, stopped = self._execute(job)
                state, error = (STOPPED if stopped else DONE), None
            except Exception as exc:  # noqa: BLE001 - a failed job is reported on its page; the worker goes on
                state, error = FAILED, str(exc) or type(exc).__name__
                if not isinstance(exc, VqclipError):  # a bug, worth its traceback in the server log
                    log.exception("job %s failed", job.id)
            if job.steering is not None:
                job.steering.finish()  # a run that failed before it began: a later steer is refused, not kept
            with self._lock:
                for child in self._jobs.values():  # branches it never took
                    if child.parent == job.id and child.state == BRANCHING and not child.branched.done():
                        child.state, child.ended = FAILED, time.time()
                        child.error = "branch: the run ended before it took the branch"
                        child.steering.finish()
                        self._changed(child)
                job.state, job.error, job.ended = state, error, time.time()
                self._changed(job)

    def _execute(self, job: Job) -> tuple[Path, bool]:
        """Run the job into a new folder under the outputs folder (named now, so a cancelled job leaves none)."""
        self.warm_up()
        feed = Progress(job, lambda: self._notify(job))
        if job.resume is not None:  # a branch: its parent wrote its folder, which it continues
            result = self._resume(job.resume, cache=self.cache, stop=job.stop, extra_callbacks=[feed],
                                  steering=job.steering)
            return job.resume, result.interrupted
        run = self._run if job.steering is None else functools.partial(self._run, steering=job.steering)
        root = default_run_dir(job.prompt or "run", self.outputs)
        item = replace(job.plan, dir=str(root)) if isinstance(job.plan, Batch) else \
            replace(job.plan, output=replace(job.plan.output, dir=str(root)))
        runs = run_plan(place([item], self.outputs), run, cache=self.cache, stop=job.stop, callbacks=[feed])
        return root, any(r.interrupted for r in runs)

    def _notify(self, job: Job) -> None:
        with self._lock:
            self._changed(job)


def steerable(plan: GenerateConfig | Batch) -> bool:
    """Whether a job's run takes steers: one image (not a batch), in a mode that takes them (not a restyle)."""
    from ..modes.registry import load, mode_name  # the mode's class: torch, as the run that follows

    return not isinstance(plan, Batch) and load(mode_name(plan)).steerable
