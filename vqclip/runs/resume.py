"""Resume: a killed or stopped run continues in its own folder as the same run given its saved state (state.pt,
written every `state_every` steps, with the job settings it was saved under); a restyle continues at its first
missing frame. The result is the image of the uninterrupted run."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Optional

from ..config import merge_layers, to_yaml
from ..errors import VqclipError
from ..files.atomic import write_text
from ..files.images import read_metadata
from ..files.jobyaml import load_yaml
from ..files.runfolder import STATE_FILE, RunFolder
from ..modes.registry import mode_name, rules_of
from ..modes.restyle import frames_done
from ..nets.load import ModelCache
from ..optim.loop import Callback
from ..optim.steer import Steering
from .jobs import local_weights, own_mask
from .judging import stopped_by_patience
from .pipeline import RunResult, run_job
from .statefile import check_job, load_state

log = logging.getLogger("vqclip")


def state_path(run_dir: Path) -> Path:
    """Where a run keeps its resumable state."""
    return RunFolder(run_dir).state


def read_job(run_dir: Path, overrides: Optional[dict] = None):
    """The resolved job of a run folder (its job.yaml), with `overrides` (e.g. more steps) on top."""
    folder = RunFolder(run_dir).open_existing()
    job = own_mask(load_yaml(folder.job), folder.path)  # a folder moved since: its own mask.png
    cfg = merge_layers([(str(folder.job), job)] + ([("command line", overrides)] if overrides else []))
    cfg = local_weights(cfg)
    if cfg.seed is None:
        raise VqclipError(f"{folder.job}: records no seed, so the run cannot be continued exactly")
    return replace(cfg, output=replace(cfg.output, dir=str(folder.path)))


def resume_run(run_dir: str | Path, *, overrides: Optional[dict] = None, cache: Optional[ModelCache] = None,
               stop: Optional[threading.Event] = None, extra_callbacks: Iterable[Callback] = (),
               steering: Optional[Steering] = None) -> RunResult:
    """Continue a killed or stopped run in its own folder from its state.pt (from step 0 when there is none); a
    restyle from its first missing frame. The folder is locked throughout (a second resume of it meanwhile is a
    one-line error); the temporary files of writes a kill cut short are removed first; a state.pt saved by another
    job than job.yaml's (`statefile.check_job`) is refused. `steering` steers the resumed run (see `run_job`): its
    changes are recorded in job.yaml after the run's earlier steers."""
    try:
        return _resume(run_dir, overrides, cache, stop, extra_callbacks, steering)
    finally:
        if steering is not None and not steering.finished:  # refused before it ran: later steers are errors, not lost
            steering.finish()


def _resume(run_dir, overrides, cache, stop, extra_callbacks, steering) -> RunResult:
    """`resume_run` but for the end of its steering."""
    folder = RunFolder(run_dir)
    cfg = read_job(folder.path, overrides)
    folder.lock()
    try:
        gone = folder.remove_leftovers()
        if gone:
            log.info("removed %d temporary file%s of writes cut short in %s", len(gone), "s" * (len(gone) > 1),
                     folder.path)
        saved = _saved_state(folder, cfg)
        if overrides:
            write_text(folder.job, to_yaml(cfg))
        return run_job(cfg, cache=cache, stop=stop, extra_callbacks=extra_callbacks, folder=folder, saved=saved,
                       steering=steering)
    finally:
        folder.unlock()


def _saved_state(folder: RunFolder, cfg) -> Optional[dict]:
    """The state to go on from (None: from step 0, or a restyle), after the checks that it belongs to this job and
    that there is something left to do."""
    if mode_name(cfg) == "restyle":
        n = rules_of(cfg).frame_count(cfg) if Path(cfg.restyle.input).is_file() else -1
        if folder.final.is_file() and frames_done([p for _, p in folder.frames()]) >= n:
            raise VqclipError(f"{folder.path}: all {n} frames are already restyled")
        return None
    saved = load_state(folder.state) if folder.state.is_file() else None
    start = int(saved["step"]) if saved else 0
    if saved and int(saved["seed"]) != cfg.seed:
        raise VqclipError(f"{folder.state}: belongs to seed {saved['seed']}, job.yaml says {cfg.seed}; set seed: "
                          f"{saved['seed']} back in job.yaml to go on, or delete state.pt to start the run over")
    if saved and not check_job(saved, cfg, folder.state):
        log.info("%s records no job settings (saved by an older vqclip): job.yaml is taken as it is; if it was "
                 "changed since, the result is not the uninterrupted run's", folder.state)
    if start > cfg.steps:
        raise VqclipError(f"{folder.path}: the saved state is at step {start}, past steps={cfg.steps}; pass more "
                          "--steps")
    patience = stopped_by_patience(folder.path) if folder.final.is_file() else None
    if patience is not None:  # its end: going on would not be the run the job describes
        best = f", best.png is step {patience['best']['step']}" if patience["best"] else ""
        raise VqclipError(f"{folder.path}: patience ended this run (the judge had not improved for "
                          f"{cfg.output.patience} scored frames); final.png is its end{best}")
    if start == cfg.steps and folder.final.is_file() and not _was_stopped(folder):
        raise VqclipError(f"{folder.path}: already finished all {cfg.steps} steps; pass --steps N to go on further")
    if saved:
        log.info("resuming %s at step %d of %d", folder.path, start, cfg.steps)
    else:
        log.info("%s has no %s yet: starting over from step 0 with seed %d", folder.path, STATE_FILE, cfg.seed)
    return saved


def _was_stopped(folder: RunFolder) -> bool:
    try:
        return bool(read_metadata(folder.final).get("stopped"))
    except VqclipError:
        return True
