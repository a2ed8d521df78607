"""The one planner of job lists: `vqclip run`, `vqclip run --ray`, `Pipeline.run` and the web page's queue expand a
job list (`jobs:`, `sweep:`, `n:`, `candidates.keep`) here into the same run folders, and treat a folder that already
holds the job's run the same way: a finished run is skipped, a stopped one resumed, a run of another job refused.

`plan` expands (torch-free: `vqclip run --dry-run` loads nothing), `place` gives each run its folder and reads how it
stands, and `run_plan` runs them in order here (best-of-n's trials shared by the `candidates.keep` images of a batch),
writing each batch's grids; the cluster dispatches the same placed runs to its workers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from ..config import GenerateConfig
from ..errors import VqclipError
from ..files.images import read_metadata
from ..files.runfolder import MARKERS, RunFolder, default_run_dir
from .batch import Batch, plan_job, run_members

log = logging.getLogger("vqclip")

DONE, RESUME, NEW = "complete", "resume", "new"


@dataclass
class PlannedJob:
    """One run of a plan: its name on displays, its config (output.dir its folder), its folder, and how the folder
    stood when planned: new, a stopped run to resume, or a complete run to skip."""

    key: str
    cfg: GenerateConfig
    dest: Path
    state: str = NEW


@dataclass
class Placed:
    """One item of a plan placed: a single run (`batch` None), or a batch's runs in its folder `root`."""

    members: list[PlannedJob]
    batch: Optional[Batch] = None
    root: Optional[Path] = None


def out_layer(overrides: Optional[dict], out: Optional[str | Path], i: int, n: int) -> Optional[dict]:
    """The options of the i-th of n jobs: `out` names the run (or batch) folder of a single job, and the folder that
    holds job-1, job-2, ... of several (`vqclip run --out`, `Pipeline.run(out=)`)."""
    if out is None:
        return overrides
    over = overrides or {}
    return {**over, "output": {**(over.get("output") or {}), "dir": str(out if n == 1 else Path(out) / f"job-{i + 1}")}}


def plan(jobs: Sequence[tuple[str, dict]], overrides: Optional[dict] = None, out: Optional[str | Path] = None,
         below: Sequence[tuple[str, dict]] = (), above: Sequence[tuple[str, dict]] = ()) -> list[GenerateConfig | Batch]:
    """Each (source, job) of a job list as one checked config or the batch its `sweep:`, `n:` or `candidates.keep`
    makes (`batch.plan_job`), every one checked before anything runs; `below`/`above`: config layers under and over
    each job (a Pipeline's preset and device), `overrides` the command line's."""
    return [plan_job(job, source, out_layer(overrides, out, i, len(jobs)), below, above)
            for i, (source, job) in enumerate(jobs)]


def folder_state(path: Path) -> str:
    """complete: final.png of a run not stopped early; resume: the folder holds a run (job.yaml); else new."""
    folder = RunFolder(path)
    if folder.final.is_file():
        try:
            if not read_metadata(folder.final).get("stopped"):
                return DONE
            if read_metadata(folder.final).get("stopped_by") == "patience":  # patience ended it: its end
                return DONE
        except VqclipError:
            pass
    return RESUME if folder.job.is_file() else NEW


def check_same_job(dest: Path, cfg: GenerateConfig) -> None:
    """Refuse a folder whose run (its job.yaml) is of another job than `cfg` (its settings but the free ones, e.g.
    steps, device; the seed too when `cfg` draws its own): a rerun goes on with its own run only. A folder that
    records no job (a final.png alone) is taken as the job's."""
    from .resume import read_job  # here: the job of a run already there (torch comes with the run path)
    from .statefile import job_changes, job_settings

    if not RunFolder(dest).job.is_file():
        return
    changed = job_changes(job_settings(read_job(dest)), cfg)
    if cfg.seed is None or cfg.seed == -1:
        changed.pop("seed", None)
    if changed:
        raise VqclipError(f"{dest}: already holds a run; choose another --out or output.dir (runs are never "
                          f"overwritten; that run's job differs in {', '.join(list(changed)[:4])})")


def place(plans: Iterable[GenerateConfig | Batch], outputs: Path = Path("outputs")) -> list[Placed]:
    """The runs of the plans, each with its folder: output.dir, or outputs/<time>-<prompt> chosen now, apart from
    each other; a batch's runs in their folders inside its own. A folder that holds this job's run is to be skipped
    (complete) or resumed; one that holds another job's run, or anything else in the way, is refused now."""
    placed, taken = [], set()

    def fresh(prompt: str) -> Path:
        path = default_run_dir(prompt, outputs)
        base, n = path, 1
        while path in taken or path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        taken.add(path)
        return path

    for item in plans:
        if isinstance(item, Batch):
            root = Path(item.dir) if item.dir else fresh(item.prompt)
            if any((root / m).exists() for m in MARKERS):  # a batch goes into a folder of batches, not of a run
                raise VqclipError(f"{root}: already holds a run; choose another --out or output.dir (runs are never "
                                  "overwritten)")
            members = [PlannedJob(f"{root.name}/{m.name}", _into(m.cfg, root / m.name), root / m.name)
                       for m in item.members]
            placed.append(Placed(members, item, root))
        else:
            dest = Path(item.output.dir) if item.output.dir else fresh(item.prompt)
            placed.append(Placed([PlannedJob(dest.name, _into(item, dest), dest)]))
    for job in (j for p in placed for j in p.members):
        job.state = folder_state(job.dest)
        if job.state == NEW:
            RunFolder(job.dest).check_new()
        else:
            check_same_job(job.dest, job.cfg)
    return placed


def _into(cfg: GenerateConfig, dest: Path) -> GenerateConfig:
    return replace(cfg, output=replace(cfg.output, dir=str(dest)))


def finished_run(job: PlannedJob) -> Any:
    """A complete run's folder as the `RunResult` a run of it gives (its job.yaml's job, else the planned one; its
    final image read back; the latent is not kept with a finished run)."""
    import torch  # here, as the run path: planning stays torch-free (`vqclip run --dry-run`)
    from ..files.images import load_image
    from ..modes.base import GenerateResult
    from .pipeline import RunResult
    from .resume import read_job

    folder = RunFolder(job.dest)
    cfg = read_job(folder.path) if folder.job.is_file() else job.cfg
    meta = read_metadata(folder.final)
    videos = sorted(p for p in folder.path.glob("*") if p.suffix in (".mp4", ".gif", ".webm"))
    frames = [p for _, p in folder.frames()]
    seed = meta.get("seed", cfg.seed)
    result = GenerateResult(load_image(folder.final), torch.empty(0), seed, int(meta.get("steps_done", 0)),
                            frames=frames)
    return RunResult(folder.path, folder.final, videos[0] if videos else None, frames, cfg, result)


def run_plan(placed: Sequence[Placed], run: Callable[..., Any], *, cache=None, stop=None,
             callbacks: Sequence = (), report: Optional[Callable[[Any], None]] = None, steering=None) -> list:
    """Run placed plans in order here: a new run with `run` (the pipeline's `run_job`, given the cache, stop flag,
    callbacks and one memo of best-of-n's trials that the `candidates.keep` images of a batch share), a stopped one
    resumed, a complete one skipped; each batch's grids and batch.yaml written for its runs. Stops after a run stopped
    early. Returns every run (skipped ones read back from their folders); `report` sees each run made as it ends;
    `steering` (one run's plan only) steers a run it resumes (a new run is steered through `run`)."""
    from .resume import resume_run  # here: the run path (torch) only to run, not to plan

    trials: dict = {}
    runs: list = []

    def one(job: PlannedJob, shared: bool = False):
        if job.state == DONE:
            log.info("skipped: %s is complete", job.dest)
            return finished_run(job)
        elif job.state == RESUME:
            result = resume_run(job.dest, cache=cache, stop=stop, extra_callbacks=callbacks, steering=steering)
        else:
            more = {"trials": trials} if shared else {}  # the images of one batch of starts: its trials run once
            result = run(job.cfg, cache=cache, stop=stop, extra_callbacks=list(callbacks), **more)
        if report is not None:
            report(result)
        return result

    for item in placed:
        if item.batch is None:
            runs.append(one(item.members[0]))
        else:
            item.root.mkdir(parents=True, exist_ok=True)
            shared = any(m.cfg.candidates.n > 1 for m in item.batch.members)  # best of n: trials to share
            runs += run_members(item.root, item.batch, item.members, lambda job: one(job, shared))
        if runs and runs[-1].interrupted:
            break
    return runs
