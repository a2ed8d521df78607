"""state.pt: a run's `RunState` on disk, written atomically every `state_every` steps and read without running code
(`torch.load(weights_only=True)`: tensors and plain containers only), with the job settings that shaped the run so a
resume can tell a job.yaml changed since."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any, Optional

import torch

from ..config import GenerateConfig
from ..errors import VqclipError
from ..files.atomic import write_bytes
from ..nets.checkpoints import unpickler_reason
from ..optim.loop import StepEvent
from ..optim.state import DEVICE_RNG_KEYS, STATE_KEYS, RunState
from .regionfiles import canonical

STATE_VERSION = 1  # keys added since (job, start) are optional: an older state still loads, a newer vqclip reads it
JOB_KEY = "job"
# job keys a resume may change without changing what the run computes: the steps to go on to (`--steps`), where and
# how it runs (`--device`, `--devices`, `--threads`, the memory options an out-of-memory error suggests), the folder
# and the progress bar (`--quiet`), where the folder's own mask.png lies (`init.mask`: a folder moved, or made on a
# cluster's worker), a branch's record of the run it came from (`branch`); every other key shapes the pixels or the
# files and must stay as the run had it
FREE_KEYS = frozenset({"steps", "device", "devices", "threads", "memory", "micro_batch", "compile", "decoder_layout",
                       "cudnn_benchmark", "output.dir", "output.progress", "init.mask", "branch.parent",
                       "branch.step"})


def job_settings(cfg: GenerateConfig) -> dict[str, Any]:
    """The job's settings that shape a run's pixels and files (all but `FREE_KEYS`), flat by section
    ({"cutouts.n": 4, ...}) and as JSON data: what state.pt records of its job."""
    flat: dict[str, Any] = {}

    def walk(obj, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value, key = getattr(obj, f.name), prefix + f.name
            if dataclasses.is_dataclass(value):
                walk(value, key + ".")
            elif key not in FREE_KEYS:
                flat[key] = json.loads(json.dumps(dataclasses.asdict(value) if dataclasses.is_dataclass(value)
                                                  else _plain(value), default=str))

    walk(canonical(cfg), "")  # region masks by their order, not where they lie (a moved folder's copies)
    return flat


def _plain(value):
    """Lists of sections (clip, story) as lists of mappings."""
    if isinstance(value, (list, tuple)):
        return [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
    return value


def job_changes(recorded: dict, cfg: GenerateConfig) -> dict[str, tuple[Any, Any]]:
    """{key: (the run's value, job.yaml's value)} for each setting of `job_settings` that differs; a key the state
    does not record (added to vqclip since) counts as its default, a key vqclip no longer has is ignored."""
    now, default = job_settings(cfg), job_settings(GenerateConfig())
    return {k: (recorded.get(k, default.get(k)), v) for k, v in now.items() if recorded.get(k, default.get(k)) != v}


def check_job(state: dict, cfg: GenerateConfig, path: Path) -> bool:
    """Refuse, in one line, a job whose settings differ from those the state was saved with, naming the keys and the
    fix; False for a state that records none (saved by a vqclip from before they were recorded)."""
    recorded = state.get(JOB_KEY)
    if recorded is None:
        return False
    check_past_steers(recorded.get("steer", []), job_settings(cfg)["steer"], int(state["step"]), path)
    changed = {k: v for k, v in job_changes(recorded, cfg).items() if k != "steer"}  # its future may differ
    if changed:
        shown = ", ".join(f"{k}: {_short(now)} (the run had {_short(was)})" for k, (was, now) in
                          list(changed.items())[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise VqclipError(f"{path}: was saved by a run of another job: job.yaml now has {shown}{more}; set "
                          f"{'it' if len(changed) == 1 else 'them'} back in job.yaml to go on, or delete state.pt to "
                          "start the run over")
    return True


def check_past_steers(recorded: list, now: list, step: int, path: Path) -> None:
    """Refuse, in one line, a job.yaml whose `steer:` entries before `step` (the state's past) differ from those the
    state was saved with; entries at or after it are the state's future (a steer taken after the last save, a
    branch's changes) and may differ."""
    past = [e for e in recorded if isinstance(e, dict) and e.get("at", 0) < step]
    mine = [e for e in now if e["at"] < step]
    for i in range(max(len(past), len(mine))):
        was, got = (past[i] if i < len(past) else None), (mine[i] if i < len(mine) else None)
        if was != got:
            said = f"steer[{i}] is {_short(got, 80)}" if got is not None else f"steer[{i}] is missing"
            had = "none" if was is None else _short(was, 80)
            raise VqclipError(f"{path}: was saved at step {step}, and job.yaml changed a steer before it: {said} (the "
                              f"run had {had}); set it back in job.yaml to go on, or delete state.pt to start the run "
                              "over")


def _short(value, limit: int = 40) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def save_state(state: RunState | dict, path: Path, steps: int, job: Optional[dict] = None) -> Path:
    """Write a run's state (or its `state_dict()`, taken inside the run's RNG context) to `path` atomically, with
    `job` (`job_settings`) beside it: a kill or a full disk mid-write leaves the previous state intact (a
    `WriteError` names the file). Serialised in memory first, so a failed write is the OSError of the file, not
    torch's stream writer's RuntimeError."""
    data = {**(state if isinstance(state, dict) else state.state_dict()), "version": STATE_VERSION, "steps": steps}
    if job is not None:
        data[JOB_KEY] = job
    buffer = io.BytesIO()
    torch.save(data, buffer)
    return write_bytes(path, buffer.getvalue(), fsync=True)


def load_state(path: Path) -> dict:
    """A saved state (tensors on CPU), read with weights_only=True; a one-line error when it is not one, or one of
    its parts is not what a state holds (a wrong type, shape or size)."""
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
    version = state.get("version", STATE_VERSION)
    if not _whole(version):
        raise VqclipError(f"{path}: not a vqclip state (its version is {_short(version)}); delete it to restart the "
                          "run")
    if version > STATE_VERSION:
        raise VqclipError(f"{path}: written by a newer vqclip (state version {version}); upgrade vqclip")
    problem = state_problem(state)
    if problem:
        raise VqclipError(f"{path}: not a usable vqclip state ({problem}); delete it to restart the run")
    return state


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def state_problem(state: dict) -> Optional[str]:
    """What in a loaded state is not what `RunState.state_dict` writes (a wrong type, shape, size or dtype), or
    None: caught here, so that a damaged or hand-made state.pt is one line, not a traceback mid-run."""
    for key in ("step", "seed", "steps", "start"):
        if key in state and not (_whole(state[key]) and state[key] >= 0):
            return f"{key} is {_short(state[key])}, not a whole number >= 0"
    z, z_init = state["z"], state["z_init"]
    if not torch.is_tensor(z) or not z.is_floating_point() or z.dim() != 4:
        return f"z is {_what(z)}, not a float tensor [B,E,h,w]"
    if not torch.is_tensor(z_init) or not z_init.is_floating_point() or z_init.shape != z.shape:
        return f"z_init is {_what(z_init)}, not a float tensor of z's shape {list(z.shape)}"
    for key in ("rng", "torch_rng"):
        try:
            torch.Generator().set_state(state[key])  # torch's own check of a CPU generator state's type and size
        except (TypeError, RuntimeError):
            return f"{key} is {_what(state[key])}, not a CPU generator state"
    for key in DEVICE_RNG_KEYS.values():
        if key in state and not (torch.is_tensor(state[key]) and state[key].dtype == torch.uint8):
            return f"{key} is {_what(state[key])}, not a generator state"
    opt = state["optimizer"]
    if not (isinstance(opt, dict) and isinstance(opt.get("state"), dict) and isinstance(opt.get("param_groups"), list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in opt["param_groups"])):
        return f"optimizer is {_what(opt)}, not an optimizer's state_dict"
    for values in opt["state"].values():
        if not isinstance(values, dict):
            return f"the optimizer's state of z is {_what(values)}, which does not fit z"
        bad = [k for k, v in values.items() if torch.is_tensor(v) and v.dim() and v.shape != z.shape]
        if bad:
            return f"optimizer state {bad[0]} is {_what(values[bad[0]])}, which does not fit z {list(z.shape)}"
    if JOB_KEY in state and not (isinstance(state[JOB_KEY], dict) and all(isinstance(k, str) for k in state[JOB_KEY])):
        return f"{JOB_KEY} is {_what(state[JOB_KEY])}, not a mapping of job settings"
    return None


def _what(value) -> str:
    """A value as an error names it: a tensor by dtype and shape, else its type."""
    if torch.is_tensor(value):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor {list(value.shape)}"
    return f"a {type(value).__name__}"


class StateSaver:
    """The after-step hook that saves state.pt (with `job`, see `save_state`) every `every` updates (0: only at the
    end of the run); during best-of-n's trials it holds every start."""

    def __init__(self, path: Path, every: int, steps: int, job: Optional[dict] = None):
        self.path, self.every, self.steps, self.job = Path(path), every, steps, job

    def __call__(self, state: RunState, event: StepEvent) -> None:
        if self.every > 0 and state.step % self.every == 0:
            save_state(state, self.path, self.steps, self.job)
