"""What runs on a cluster's workers, free of Ray: a `Worker` holds one model cache for every job it runs and runs a
job (new or resumed) with the one pipeline, into a local temporary folder whose files it sends back, or straight into
a folder shared by every node; a `Progress` board collects each job's step for the driver's display."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from ..config import GenerateConfig, to_yaml
from ..files.atomic import write_text
from ..files.runfolder import FRAMES_DIR, JOB_FILE, RunFolder
from .regionfiles import mask_files, nameable, with_masks
from ..modes.restyle import Restyle
from ..nets.device import threads
from ..nets.load import ModelCache
from .pipeline import RunResult, run_job
from .resume import resume_run


@dataclass
class Task:
    """One job sent to a worker: its config, the folder the CLI would give it (`dest`, as job.yaml records it) and
    that folder's absolute path on the driver; `files` seeds a resume when outputs are not shared."""

    key: str
    cfg: GenerateConfig
    dest: str
    abs_dest: str
    resume: bool = False
    shared: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    frames: Optional[tuple[int, int]] = None  # a restyle with blend 0: restyle only input frames [lo, hi)
    callbacks: list = field(default_factory=list)  # more step callbacks (picklable), run on the worker
    progress: Any = None  # a handle of the driver's `Progress` board (a Ray actor), or None


def landed(cfg: GenerateConfig, folder: Path, dest: Path) -> GenerateConfig:
    """The config with the files it names inside the worker's `folder` (an edit's mask, the copies of its region
    masks) named where they land on the driver, inside `dest`."""
    mask = cfg.init.mask
    if isinstance(mask, str) and mask and Path(mask).is_relative_to(folder):
        cfg = replace(cfg, init=replace(cfg.init, mask=str(dest / Path(mask).relative_to(folder))))
    names = {m: str(dest / Path(m).relative_to(folder)) for m in mask_files(cfg) if Path(m).is_relative_to(folder)}
    return with_masks(cfg, {m: n for m, n in names.items() if nameable(n)}) if names else cfg


def folder_files(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its path relative to it (posix), temporary writes left out."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".tmp-" not in p.name}


class StepReport:
    """A step callback that tells the progress board a job's step, at most twice a second (and its last step)."""

    def __init__(self, board, key: str, every_s: float = 0.5):
        self.board, self.key, self.every_s, self.last = board, key, every_s, 0.0

    def __call__(self, event) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s or event.step >= event.total:
            self.last = now
            self.board.report.remote(self.key, event.step, event.total, event.frame)


class Progress:
    """The step each running job has reached, by job key: `report` from the workers, `snapshot` for the driver."""

    def __init__(self):
        self.steps: dict[str, str] = {}

    def report(self, key: str, step: int, total: int, frame: Optional[int] = None) -> None:
        self.steps[key] = f"{step}/{total}" if frame is None else f"frame {frame} {step}/{total}"

    def snapshot(self) -> dict[str, str]:
        return dict(self.steps)


class Worker:
    """One device's (or `threads` CPUs') worker: loads each model once, for all the jobs it is given."""

    def __init__(self, threads: int = 1):
        self.cache, self.threads = ModelCache(), threads

    def pid(self) -> int:
        return os.getpid()

    def loads(self) -> int:
        """How many VQGANs this worker has loaded (one per model set)."""
        return len(self.cache.vqgans)

    def run(self, task: Task) -> dict:
        """Run the task; its outputs' files (unless shared), seed, steps and whether it was stopped."""
        with threads(task.cfg.threads or self.threads):  # the job's own, else the CPUs the worker was given
            return self._task(task)

    def _task(self, task: Task) -> dict:
        callbacks = list(task.callbacks) + ([StepReport(task.progress, task.key)] if task.progress else [])
        if task.shared:
            run = self._run(Path(task.abs_dest), task, callbacks)
            return {"files": None, **_summary(run)}
        with tempfile.TemporaryDirectory(prefix="vqclip-ray-") as tmp:
            folder = Path(tmp) / "run"
            for rel, data in task.files.items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(data)
            if task.frames:
                return self._frames(folder, task, callbacks)
            run = self._run(folder, task, callbacks)
            # job.yaml names the folder the results land in on the driver, as `vqclip run` would write it, and the
            # files kept in it (an edit's mask) where they land there
            cfg = replace(run.config, output=replace(run.config.output, dir=task.dest))
            write_text(folder / JOB_FILE, to_yaml(landed(cfg, folder, Path(task.abs_dest))))
            return {"files": folder_files(folder), **_summary(run)}

    def _frames(self, folder: Path, task: Task, callbacks: list) -> dict:
        """Frames [lo, hi) of a restyle whose frames are independent (blend 0): the restyle's frame range (its mode
        starts at lo, max_frames hi); back come those frames and job.yaml, as the whole job's (the driver's last
        task makes its video and final.png)."""
        lo, hi = task.frames
        r = task.cfg.restyle
        cfg = replace(task.cfg, output=replace(task.cfg.output, dir=str(folder), video=False),
                      restyle=replace(r, max_frames=hi))
        (folder / FRAMES_DIR).mkdir(parents=True)
        write_text(folder / JOB_FILE, to_yaml(cfg))
        run = run_job(cfg, cache=self.cache, extra_callbacks=callbacks, folder=RunFolder(folder),
                      mode=Restyle(first=lo))
        whole = replace(run.config, output=replace(run.config.output, dir=task.dest, video=task.cfg.output.video),
                        restyle=replace(run.config.restyle, max_frames=r.max_frames))
        files = {f"{FRAMES_DIR}/{i:06d}.png": (folder / FRAMES_DIR / f"{i:06d}.png").read_bytes()
                 for i in range(lo, hi)}
        return {"files": {**files, JOB_FILE: to_yaml(whole).encode()}, **_summary(run)}

    def _run(self, folder: Path, task: Task, callbacks: list) -> RunResult:
        if task.resume:
            return resume_run(folder, cache=self.cache, extra_callbacks=callbacks)
        cfg = replace(task.cfg, output=replace(task.cfg.output, dir=str(folder)))
        return run_job(cfg, cache=self.cache, extra_callbacks=callbacks)


def _summary(run: RunResult) -> dict:
    return {"seed": run.config.seed, "steps": run.result.steps, "stopped": run.interrupted}
