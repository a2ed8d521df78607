"""Sweeps: a job file's `sweep:` mapping of keys to lists of values, expanded into the cartesian product of jobs (the
first key varies slowest), each labelled with its values and named by them. Pure: no models, no files; each job's
values are type-checked when its config is built."""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

from ..errors import VqclipError, shown
from .fields import keys
from .job import GenerateConfig
from .layers import unknown_key

SWEEP = "sweep"
NOT_SWEPT = {"n": "a sweep is a batch already; sweep over seed instead (sweep: {seed: [1, 2, 3]})",
             "output.dir": "every job of a sweep has its own folder inside the batch's output.dir",
             "candidates.keep": "keep makes a batch of its own; give it outside the sweep, without one",
             "candidates.rank": "set by candidates.keep"}


def check_sweep(sweep: Any, source: str) -> dict[str, list]:
    """The sweep as {key: values}: every key a job key (or the same unknown-key error as a job file's, with a "did you
    mean"), every value a non-empty list; one line naming the source and the key otherwise."""
    if not isinstance(sweep, dict) or not sweep:
        raise VqclipError(f"{source}: sweep: expected a mapping of job keys to lists of values, e.g. "
                          f"sweep: {{seed: [1, 2], optimizer.lr: [0.05, 0.1]}}; got {shown(sweep)}")
    known = set(keys(GenerateConfig))
    for key, values in sweep.items():
        if not isinstance(key, str) or key not in known:
            raise unknown_key(key, f"{source}: sweep")
        if key in NOT_SWEPT:
            raise VqclipError(f"{source}: sweep: {key} cannot be swept: {NOT_SWEPT[key]}")
        if not isinstance(values, list) or not values:
            raise VqclipError(f"{source}: sweep.{key}: expected a non-empty list of values, e.g. [1, 2], got "
                              f"{shown(values)}")
    return sweep


def expand(job: dict, source: str) -> list[tuple[dict[str, Any], dict]]:
    """(values, job layer) of each job of a sweep, in product order (the first key slowest); a job without a sweep
    is itself, with no values."""
    if SWEEP not in job:
        return [({}, job)]
    sweep = check_sweep(job[SWEEP], source)
    base = {k: v for k, v in job.items() if k != SWEEP}
    out = []
    for combo in itertools.product(*sweep.values()):
        values = dict(zip(sweep, combo))
        layer = copy.deepcopy(base)
        for key, value in values.items():
            _set(layer, key, copy.deepcopy(value), source)
        out.append((values, layer))
    return out


def _set(tree: dict, dotted: str, value: Any, source: str) -> None:
    """Set `a.b` in a nested job layer, making the sections on the way."""
    *sections, last = dotted.split(".")
    for k in sections:
        tree = tree.setdefault(k, {})
        if not isinstance(tree, dict):
            raise VqclipError(f"{source}: sweep: {dotted}: '{k}' in the job is not a section")
    tree[last] = value


def short_keys(swept: list[str]) -> dict[str, str]:
    """The name each key goes by in folder names and grid labels: its last part (optimizer.lr -> lr), or the whole
    key where two last parts are the same (clip.weight beside init.weight)."""
    last = [k.rsplit(".", 1)[-1] for k in swept]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(swept, last)}


def value_text(value: Any) -> str:
    """A value as a label shows it: lists as 'a x b', the rest as written."""
    if isinstance(value, list):
        return " x ".join(value_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def folder_name(values: dict[str, Any], short: dict[str, str]) -> str:
    """The run folder of a job in its batch, from its values: `seed=1,lr=0.05,prompt=a-red-circle`."""
    parts = []
    for key, value in values.items():
        text = re.sub(r"[^a-z0-9.+-]+", "-", value_text(value).lower()).strip("-.")[:40].rstrip("-.") or "x"
        parts.append(f"{short[key]}={text}")
    return ",".join(parts)


def labels(values: dict[str, Any], short: dict[str, str]) -> dict[str, str]:
    """key -> 'short=value', the label text of each swept value of a job."""
    return {key: f"{short[key]}={value_text(value)}" for key, value in values.items()}
