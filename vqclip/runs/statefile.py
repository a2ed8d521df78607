"""state.pt: a run's `RunState` on disk, written atomically every `state_every` steps and read without running code
(`torch.load(weights_only=True)`: tensors and plain containers only)."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ..errors import VqclipError
from ..files.atomic import write_bytes
from ..nets.checkpoints import unpickler_reason
from ..optim.loop import StepEvent
from ..optim.state import STATE_KEYS, RunState

STATE_VERSION = 1


def save_state(state: RunState | dict, path: Path, steps: int) -> Path:
    """Write a run's state (or its `state_dict()`, taken inside the run's RNG context) to `path` atomically: a kill or
    a full disk mid-write leaves the previous state intact (a `WriteError` names the file). Serialised in memory
    first, so a failed write is the OSError of the file, not torch's stream writer's RuntimeError."""
    data = {**(state if isinstance(state, dict) else state.state_dict()), "version": STATE_VERSION, "steps": steps}
    buffer = io.BytesIO()
    torch.save(data, buffer)
    return write_bytes(path, buffer.getvalue(), fsync=True)


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
    """The after-step hook that saves state.pt every `every` updates (0: only at the end of the run); during best-of-n's
    trials it holds every start."""

    def __init__(self, path: Path, every: int, steps: int):
        self.path, self.every, self.steps = Path(path), every, steps

    def __call__(self, state: RunState, event: StepEvent) -> None:
        if self.every > 0 and state.step % self.every == 0:
            save_state(state, self.path, self.steps)
