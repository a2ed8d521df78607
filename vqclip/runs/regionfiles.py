"""A job's region mask images kept in its run folder (regions/1.png, ... in order of first appearance), as an edit's
mask.png is: the run's job names the copies, so a resume, a moved folder or `--from final.png` finds them
(torch-free)."""

from __future__ import annotations

from dataclasses import is_dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import VqclipError
from ..files.atomic import atomic_path
from ..optim.prompts import _split_region
from ..optim.regions import REGIONS
from ..optim.schedules import STORY_SEPARATOR

REGIONS_DIR = "regions"  # the run folder's copies of its region mask images


def _region(piece: str):
    """The mask image path a prompt piece ('text:1@masks/a.png') aims at, or None (no region, a named one, bad)."""
    try:
        region = _split_region(piece.strip(), "prompt").region
    except VqclipError:
        return None
    return region if region is not None and region not in REGIONS else None


def _pieces(spec: str) -> list[str]:
    """A prompt string cut at '|' and '^' (the separators kept as pieces of their own)."""
    out, cur = [], ""
    for c in spec:
        if c in ("|", STORY_SEPARATOR):
            out += [cur, c]
            cur = ""
        else:
            cur += c
    return out + [cur]


def _renamed(spec: str, names: dict[str, str]) -> str:
    """`spec` with each mask image region in `names` replaced by its new name, all else as it was."""
    out = []
    for piece in _pieces(spec):
        region = _region(piece)
        if region in names:
            body, _, tail = piece.rstrip().rpartition("@")
            piece = body + "@" + names[region] + piece[len(piece.rstrip()):]
        out.append(piece)
    return "".join(out)


def _specs(job: Any) -> list[str]:
    """The prompt strings of a job (a config or a job layer's mapping): its story keyframes', its prompt, its
    negatives, in that order (`job_regions`'s)."""
    get = (lambda k, d: getattr(job, k, d)) if is_dataclass(job) else job.get
    story = get("story", None) or []
    keys = [k.prompt if is_dataclass(k) else k.get("prompt") if isinstance(k, dict) else None for k in story]
    specs = keys + [get("prompt", None)] + list(get("negative", None) or [])
    return [s for s in specs if isinstance(s, str)]


def mask_files(job: Any) -> list[str]:
    """The distinct mask image paths a job's prompts aim at, in order of first appearance."""
    return list(dict.fromkeys(r for s in _specs(job) for p in _pieces(s) if (r := _region(p)) is not None))


def with_masks(job: Any, names: dict[str, str]) -> Any:
    """The job (a config or a layer's mapping) with its mask image regions renamed by `names` in every prompt."""
    if not names:
        return job

    def story(k):
        if is_dataclass(k):
            return replace(k, prompt=_renamed(k.prompt, names))
        return {**k, "prompt": _renamed(k["prompt"], names)} if isinstance(k, dict) and isinstance(
            k.get("prompt"), str) else k

    def fix(v):
        return _renamed(v, names) if isinstance(v, str) else v

    if is_dataclass(job):
        return replace(job, prompt=fix(job.prompt), negative=[fix(n) for n in job.negative],
                       story=[story(k) for k in job.story])
    out = dict(job)
    if isinstance(out.get("prompt"), str):
        out["prompt"] = fix(out["prompt"])
    if isinstance(out.get("negative"), list):
        out["negative"] = [fix(n) for n in out["negative"]]
    if isinstance(out.get("story"), list):
        out["story"] = [story(k) for k in out["story"]]
    return out


def copy_path(folder: Path, i: int) -> Path:
    """The file of the i-th (from 1) region mask copy of a run folder."""
    return Path(folder) / REGIONS_DIR / f"{i}.png"


def copy_name(folder: Path, i: int) -> str:
    """The i-th (from 1) region mask copy of a run folder, as a prompt names it."""
    return str(copy_path(folder, i).absolute())


def nameable(path: str) -> bool:
    """Whether a prompt can name `path` as its region (no space, ':', '|', '^' or '@' in it)."""
    return _region(f"x@{path}") == path and not any(c in path for c in "|^")


def copies(job: Any, folder: Path) -> dict[str, str]:
    """{mask image path: its copy in `folder`} for each mask of the job whose copy a prompt can name."""
    names = {m: copy_name(folder, i) for i, m in enumerate(mask_files(job), 1)}
    return {m: c for m, c in names.items() if nameable(c)}


def save_region_masks(job: Any, folder: Path) -> list[Path]:
    """Copy each mask image of the job into folder/regions/<i>.png, as grey 8-bit PNGs (its grey levels as
    `regions.read_mask` reads them, at its own size), written atomically."""
    out = []
    for i, source in enumerate(mask_files(job), 1):
        path = copy_path(folder, i)
        path.parent.mkdir(exist_ok=True)
        with Image.open(source) as im, atomic_path(path) as tmp:
            im.convert("L").save(tmp, format="PNG")
        out.append(path)
    return out


def own_regions(config: dict, folder: Path) -> dict:
    """A job layer whose mask images are gone from where its prompts name them but kept in `folder` (regions/<i>.png,
    the i-th of the job): those copies."""
    names = {}
    for i, m in enumerate(mask_files(config), 1):
        kept = copy_path(folder, i)
        if not Path(m).is_file() and kept.is_file() and nameable(str(kept)):
            names[m] = str(kept)
    return with_masks(config, names)


def canonical(job: Any) -> Any:
    """The job with its i-th mask image named regions/<i>.png: the same job wherever its masks or folder lie (what a
    state.pt records of it)."""
    return with_masks(job, {m: f"{REGIONS_DIR}/{i}.png" for i, m in enumerate(mask_files(job), 1)})
