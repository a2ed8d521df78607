"""Branching a run: a new run folder beside the parent's (its name + "-b1", "-b2", ...) whose job is the parent's with
the steers that took effect before the branch's step, the branch's changes as steer entries at that step and
`branch: {parent, step}`, and whose state.pt is the parent's state at the start of that step; `vqclip resume CHILD`
continues it, and `vqclip run CHILD/job.yaml` makes the same final.png from step 0."""

from __future__ import annotations

import itertools
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Optional

from ..config import BranchConfig, GenerateConfig, SteerEntry, check, to_yaml
from ..errors import write_error
from ..files.atomic import write_text
from ..files.runfolder import MASK_FILE, RunFolder
from .statefile import job_settings, save_state

log = logging.getLogger("vqclip")

REGIONS_DIR = "regions"  # the region masks' copies (`regionfiles.copy_path`), taken along for a moved parent


def branch_job(cfg: GenerateConfig, parent: str, step: int, past: list[dict], changes: dict,
               out: Path) -> GenerateConfig:
    """The child's job: `cfg` with the steer entries `past` (those before `step`), `changes` as an entry at `step`,
    `branch` naming `parent` and `step`, and its folder `out`; checked as any job is (a one-line error)."""
    steer = [SteerEntry(**e) for e in past if e["at"] < step] + [SteerEntry(at=step, **changes)]
    child = replace(cfg, steer=steer, branch=BranchConfig(parent=parent, step=step),
                    output=replace(cfg.output, dir=str(out)))
    check(child)
    return child


def claim_child(parent: Path) -> Path:
    """The first free folder beside `parent` named `parent.name + "-bN"` (N = 1, 2, ...), made now (a folder made by
    another branch meanwhile is passed over, never shared)."""
    for n in itertools.count(1):
        path = parent.parent / f"{parent.name}-b{n}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise write_error(path, exc) from None
        return path
    raise AssertionError("unreachable")


def write_branch(cfg: GenerateConfig, parent: RunFolder, step: int, past: list[dict], changes: dict,
                 saved: Optional[dict]) -> Path:
    """Write a branch of the run in `parent` (whose job, without its steers, is `cfg`) at `step`: the child's folder
    with its job.yaml, the parent's frames before `step` and its masks, and state.pt = `saved` (the parent's
    `RunState.state_dict()` at the start of `step`; None: the child starts from step 0 and replays to `step`).
    Returns the child's folder; on any error nothing of it is left."""
    path = claim_child(parent.path)
    try:
        child = branch_job(cfg, parent.path.name, step, past, changes, path)
        folder = RunFolder(path)
        for index, frame in parent.frames():
            if index < step:  # the steps before the branch are the parent's: so are their frames
                folder.frames_dir.mkdir(exist_ok=True)
                shutil.copyfile(frame, folder.frame(index))
        if (parent.path / MASK_FILE).is_file():
            shutil.copyfile(parent.path / MASK_FILE, path / MASK_FILE)
        if (parent.path / REGIONS_DIR).is_dir():
            shutil.copytree(parent.path / REGIONS_DIR, path / REGIONS_DIR)
        if saved is not None:
            save_state(saved, folder.state, child.steps, job_settings(child))
        write_text(folder.job, to_yaml(child))  # last: the folder holds a run once its job is there
    except BaseException as exc:
        shutil.rmtree(path, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise
    log.info("branched %s at step %d into %s (%s)", parent.path, step, path,
             "from its state then" if saved is not None else "from step 0: it replays the parent's steps to the branch")
    return path

