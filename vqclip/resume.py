"""Resume: every run keeps `state.pt` (latent, optimizer, step, RNG states) in its folder, written atomically;
`resume_run(RUN)` rebuilds the job from job.yaml, loads that state and continues to the same final image.

state.pt holds only tensors and plain containers and is read with `torch.load(weights_only=True)`: loading it
never runs code. Restyle runs resume per frame instead: frames already written are kept, the rest are made.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Optional

import torch

from .checkpoints import unpickler_reason
from .errors import VqclipError
from .generator import Callback, Generation, StepEvent

log = logging.getLogger("vqclip")

STATE_FILE = "state.pt"
STATE_VERSION = 1
STATE_KEYS = ("z", "z_init", "step", "optimizer", "rng", "torch_rng", "seed")


def state_path(run_dir: Path) -> Path:
    """Where a run keeps its resumable state."""
    return Path(run_dir) / STATE_FILE


def save_state(gen: Generation, path: Path) -> Path:
    """Write the generation's state to `path` atomically (a kill mid-write leaves the previous state intact)."""
    state = {**gen.state_dict(), "version": STATE_VERSION, "steps": gen.cfg.steps}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_state(path: Path) -> dict:
    """A saved state (tensors on CPU), read with weights_only=True; a one-line error when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise VqclipError(f"{path}: no such state file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only: garbage fails anywhere in the unpickler (EOFError, IndexError, ...)
        reason = unpickler_reason(exc)  # torch's long weights-only error, down to its one informative line
        raise VqclipError(f"{path}: not a readable vqclip state ({reason}); delete it to restart the run") from None
    missing = [k for k in STATE_KEYS if k not in state] if isinstance(state, dict) else list(STATE_KEYS)
    if missing:
        raise VqclipError(f"{path}: not a vqclip state (missing {', '.join(missing)}); delete it to restart the run")
    if state.get("version", STATE_VERSION) > STATE_VERSION:
        raise VqclipError(f"{path}: written by a newer vqclip (state version {state['version']}); upgrade vqclip")
    return state


class StateSaver:
    """Save state.pt every `every` updates (0: never during the run); `save(gen)` once more at the end."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = Path(path), every

    def __call__(self, event: StepEvent) -> None:
        if self.every > 0 and event.generation.step_count % self.every == 0 and not event.trial:
            save_state(event.generation, self.path)

    def save(self, gen: Generation) -> Path:
        return save_state(gen, self.path)


def _frame_step(path: Path) -> Optional[int]:
    return int(path.stem) if path.stem.isdigit() else None


def read_job(run_dir: Path, overrides: Optional[dict] = None):
    """The resolved job of a run folder (its job.yaml), with `overrides` (e.g. more steps) on top."""
    from .config import merge_layers
    from .jobs import local_weights
    from .jobyaml import load_yaml

    job = run_dir / "job.yaml"
    if not run_dir.is_dir():
        why = "is a file, not a run folder; give the folder that holds it" if run_dir.exists() else "no such run folder"
        raise VqclipError(f"{run_dir}: {why}")
    if not job.is_file():
        raise VqclipError(f"{run_dir}: holds no job.yaml, so it is not a vqclip run folder that can be resumed")
    cfg = merge_layers([(str(job), load_yaml(job))] + ([("command line", overrides)] if overrides else []))
    cfg = local_weights(cfg)
    if cfg.seed is None:
        raise VqclipError(f"{job}: records no seed, so the run cannot be continued exactly")
    return replace(cfg, output=replace(cfg.output, dir=str(run_dir)))


def resume_run(run_dir: str | Path, *, overrides: Optional[dict] = None, cache=None,
               stop: Optional[threading.Event] = None, extra_callbacks: Iterable[Callback] = ()):
    """Continue a killed or stopped run in its own folder from its state.pt (from step 0 when there is none)."""
    from .animation import frame_every, run_generation
    from .callbacks import ProgressBar, SaveFrames, StopOnFlag
    from .generator import pick_device
    from .config import to_yaml
    from .jobs import finish_run, load_models
    from .outputs import atomic_write_text

    run_dir = Path(run_dir)
    cfg = read_job(run_dir, overrides)
    if cfg.restyle.input:
        from .restyle import restyle_job

        return restyle_job(cfg, cache=cache, stop=stop, extra_callbacks=extra_callbacks, resume=True)
    device = pick_device(cfg.device)
    state = load_state(state_path(run_dir)) if state_path(run_dir).is_file() else None
    start = int(state["step"]) if state else 0
    if state and int(state["seed"]) != cfg.seed:
        raise VqclipError(f"{state_path(run_dir)}: belongs to seed {state['seed']}, job.yaml says {cfg.seed}")
    if start > cfg.steps:
        raise VqclipError(f"{run_dir}: the saved state is at step {start}, past steps={cfg.steps}; pass more --steps")
    if start == cfg.steps and (run_dir / "final.png").is_file() and not _was_stopped(run_dir):
        raise VqclipError(f"{run_dir}: already finished all {cfg.steps} steps; pass --steps N to go on further")
    if state:
        log.info("resuming %s at step %d of %d", run_dir, start, cfg.steps)
    else:
        log.info("%s has no %s yet: starting over from step 0 with seed %d", run_dir, STATE_FILE, cfg.seed)
    models = load_models(cfg, device, cache)
    if overrides:
        atomic_write_text(run_dir / "job.yaml", to_yaml(cfg))
    # Frames from before the saved step are kept; later ones (made after the last save) are made again, and those
    # not made again are removed once the run is over (so a resume that fails loses nothing)
    frames = SaveFrames(run_dir / "frames", frame_every(cfg))
    (run_dir / "frames").mkdir(exist_ok=True)
    stale = []
    for path in sorted((run_dir / "frames").glob("*.png")):
        step = _frame_step(path)
        if step is not None:
            (frames.saved if step < start else stale).append(path)
    callbacks: list[Callback] = [frames, *extra_callbacks]
    bar = ProgressBar(cfg.steps, initial=start, desc="resume") if cfg.output.progress else None
    if bar:
        callbacks.append(bar)
    if stop is not None:
        callbacks.append(StopOnFlag(stop))
    try:
        result = run_generation(cfg, models, callbacks, device, state=state)
    finally:
        if bar:
            bar.close()
    frames.keep_start(result.start)
    for path in set(stale) - set(frames.saved):
        path.unlink(missing_ok=True)
    return finish_run(cfg, run_dir, result, frames.saved)


def _was_stopped(run_dir: Path) -> bool:
    from .outputs import read_metadata

    try:
        return bool(read_metadata(run_dir / "final.png").get("stopped"))
    except VqclipError:
        return True
