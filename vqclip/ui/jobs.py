"""Jobs from the page: JSON keys or a YAML text, checked like `vqclip run` and refused where they name a file of the
server (models, outputs, inputs) other than an upload, so the page can reach only the presets and its uploads."""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from ..config import GenerateConfig
from ..config.fields import file_keys, keys as config_keys, walk
from ..config.job import GenerateConfig as JobConfig
from ..errors import VqclipError
from ..files.jobyaml import load_value
from ..optim.prompts import parse_prompts
from ..optim.regions import ALIASES, REGIONS
from ..runs.batch import Batch
from ..runs.plan import plan as plan_jobs
from ..runs.regionfiles import REGIONS_DIR
from .options import form_options, label_of

MAX_YAML = 64_000  # characters of a pasted job; any real job is far smaller
MAX_VALUES = 10_000  # values in a job, its YAML's aliases expanded (a few refs can stand for billions)
MAX_DEPTH = 16  # levels of nesting in a job (a sweep of a story's keyframe's prompt list is 5)
UPLOAD = re.compile(r"upload:([0-9a-f]{32})((?::[^:]*){0,2})")  # upload:ID[:weight[:stop]]
UPLOAD_FILE = re.compile(r"[0-9a-f]{32}\.png")  # an upload's file in the uploads folder
COPY_FILE = re.compile(r"[1-9][0-9]*\.png")  # a run's copy of a region mask, in its regions/ folder
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")  # an open_clip name or tag, a preset: no path
FILE_SUFFIX = re.compile(r"\.(json|safetensors|pt|pth|bin|ckpt|yaml|yml)$", re.IGNORECASE)
NO_FILES = file_keys(JobConfig, "server")  # keys that name files of the server: no upload form
MODEL_NAMES = (*(k.replace("[]", "") for k in file_keys(JobConfig, "model")), "model")  # model names, or files
UPLOAD_KEYS = file_keys(JobConfig, "image")  # keys that name images: the page's uploads
LISTS = tuple(o.key for o in walk(JobConfig) if o.key in UPLOAD_KEYS and typing.get_origin(o.type) is list)
KEYS = sorted(config_keys(JobConfig), key=len, reverse=True)
PROMPT_KEYS = ("prompt", "negative", "story")  # keys whose prompts may name a region's mask image (a file)


@dataclass(frozen=True)
class Uploads:
    """The page's uploads folder as the callable `check_safe` takes: an upload id -> its file (picklable, so that a
    checking process can use it)."""

    folder: Path

    def __call__(self, upload_id: str) -> str:
        path = Path(self.folder) / f"{upload_id}.png"
        if not path.is_file():
            raise VqclipError(f"upload:{upload_id}: no such upload; upload the image again")
        return str(path)


def check_job(data: dict, uploads: Uploads, allow_paths: bool = False,
              device: Optional[str] = None) -> GenerateConfig | Batch:
    """The checked job (or batch) of a page's request, `{"job": {...}}` or `{"yaml": "..."}` (run by the server in a
    checking process with a time and memory limit: see vqclip.ui.bounded)."""
    job = data["job"] if isinstance(data.get("job"), dict) else from_yaml(data["yaml"])
    return plan(job, uploads, allow_paths=allow_paths, device=device)


def from_yaml(text: str) -> dict:
    """A job mapping from a pasted or uploaded YAML text, read as a job file is read."""
    if len(text) > MAX_YAML:
        raise VqclipError(f"yaml: the job is {len(text)} characters; a job is at most {MAX_YAML}")
    try:
        data = load_value(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise VqclipError(f"yaml: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise VqclipError(f"yaml: nested too deeply; a job is at most {MAX_DEPTH} levels deep") from None
    if not isinstance(data, dict):
        raise VqclipError("yaml: a job is a mapping of keys (prompt: ..., steps: ...), got "
                          f"{type(data).__name__}")
    if "jobs" in data:
        raise VqclipError("yaml: holds a list of jobs (`jobs:`); the page runs one job (or a sweep) at a time")
    return data


def check_size(job: Any, what: str = "job") -> None:
    """A one-line error for a job of more than MAX_VALUES values (aliases counted as often as they stand) or MAX_DEPTH
    levels, found without recursion and stopping at the limit: what passes is safe to walk and check."""
    stack, count = [(job, 1)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise VqclipError(f"{what}: holds over {MAX_VALUES} values (YAML aliases counted as often as they are "
                              "used); a job is far smaller")
        if depth > MAX_DEPTH:
            raise VqclipError(f"{what}: nested over {MAX_DEPTH} levels deep; a job is far flatter")
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((v, depth + 1) for v in items)


def check_safe(job: dict, upload: Callable[[str], str]) -> dict:
    """The job with upload ids (`upload:ID[:weight]`) as their files (`upload(id)` -> path); any key that would
    name a server file is refused with a one-line message naming the key."""
    job = dict(job)
    for key in list(job):
        if not isinstance(key, str):
            raise VqclipError(f"{key!r}: job keys are names such as prompt or steps")
    sweep = job.get("sweep")
    if isinstance(sweep, dict):
        job["sweep"] = {k: [_value(str(k), v, upload) for v in vs] if isinstance(vs, list) else _value(str(k), vs, upload)
                        for k, vs in sweep.items()}
    for key in [k for k in job if k != "sweep"]:
        job[key] = _value(key, job[key], upload)
    return job


def _value(key: str, value: Any, upload: Callable[[str], str]) -> Any:
    """One (possibly nested) value at dotted `key`, checked and with uploads resolved."""
    if isinstance(value, dict):
        return {k: _value(f"{key}.{k}", v, upload) for k, v in value.items()}
    base = re.sub(r"\[\d*\]", "", key)
    if any(base == k or base.startswith(k + ".") or k.startswith(base + ".") for k in NO_FILES):  # or a section's
        if value in (None, "", [], {}):
            return value
        raise VqclipError(f"{key}: the page cannot name files of the server; choose a preset (model) instead"
                          if not base.startswith("output") else f"{key}: runs from the page go into the server's "
                          "outputs folder; leave it unset")
    if base in PROMPT_KEYS:
        return _regions(key, value, upload)
    if base == "steer" and isinstance(value, list):  # a steered run's entries name images too
        return [_steer_entry(f"{key}[{i}]", entry, upload) for i, entry in enumerate(value)]
    if base in ("clip", "candidates.clip") and isinstance(value, list):
        return [_value(f"{key}[{i}]", v, upload) for i, v in enumerate(value)]
    if base in ("clip", "candidates.clip"):  # a CLIP entry given as its bare name
        base = base + ".model"
    if base in MODEL_NAMES:
        if value is not None and (not isinstance(value, str) or not NAME.fullmatch(value) or FILE_SUFFIX.search(value)):
            raise VqclipError(f"{key}: {str(value)[:60]!r} is not a model name; the page can use presets and "
                              "open_clip names, not files of the server")
        return value
    if base in UPLOAD_KEYS and base not in LISTS:  # one image
        return None if value in (None, "") else _upload(key, value, upload)
    if base in UPLOAD_KEYS:  # a list of images
        items = value if isinstance(value, list) else [value]
        return [_upload(f"{key}[{i}]", v, upload) for i, v in enumerate(items)]
    return value


def _steer_entry(key: str, entry: Any, upload: Callable[[str], str]) -> Any:
    """One `steer:` entry of a page's job: the regions of its prompt and negatives, its image prompts and its mask
    as the job's own are taken (uploads only, never a file of the server); what is no mapping is left for the job's
    check to name."""
    if not isinstance(entry, dict):
        return entry
    out = dict(entry)
    for name in ("prompt", "negative"):
        if name in out:
            out[name] = _regions(f"{key}.{name}", out[name], upload)
    images = out.get("images")
    if images is not None:
        out["images"] = [_upload(f"{key}.images[{i}]", v, upload)
                         for i, v in enumerate(images if isinstance(images, list) else [images])]
    if out.get("mask") not in (None, ""):
        out["mask"] = _upload(f"{key}.mask", out["mask"], upload)
    return out


def _regions(key: str, value: Any, upload: Callable[[str], str]) -> Any:
    """Prompts (a string, a list of strings and `{text, weight, stop, mask}` mappings, story keyframes) whose regions
    are named ones or uploads (`mask: upload:ID`, resolved to its file); a mask image of the server is refused. What
    does not parse is left for the job's own check to name."""
    if isinstance(value, list):
        return [_regions(f"{key}[{i}]", v, upload) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = dict(value)
        if "prompt" in out:  # a story keyframe
            out["prompt"] = _regions(f"{key}.prompt", out["prompt"], upload)
        mask = out.get("mask")
        if isinstance(mask, str) and ALIASES.get(mask.strip(), mask.strip()) not in REGIONS:
            out["mask"] = _upload(f"{key}.mask", mask.strip(), upload)
        return out
    if isinstance(value, str):
        try:
            prompts = parse_prompts(value)
        except VqclipError:
            return value
        for p in prompts:
            if p.region is not None and p.region not in REGIONS and not _is_upload(p.region, upload):
                raise VqclipError(f"{key}: the page cannot read mask files of the server ({p.region[:60]!r}); name a "
                                  f"region ({', '.join(REGIONS)}) or upload the mask: "
                                  "[{text: ..., mask: upload:ID}]")
    return value


def _is_upload(path: str, upload: Callable[[str], str]) -> bool:
    """Whether `path` is one of the page's uploads, or a run's copy of one in the outputs folder around them
    (<run>/regions/<i>.png): a re-run's region mask, as its job.yaml names it."""
    folder = getattr(upload, "folder", None)
    p = Path(path)
    if folder is not None and p.parent.name == REGIONS_DIR and COPY_FILE.fullmatch(p.name) and p.is_absolute():
        return p.resolve().is_relative_to(Path(folder).resolve().parent)  # no '..' or link leads out of outputs
    return folder is not None and p.parent == Path(folder) and UPLOAD_FILE.fullmatch(p.name) is not None


def _upload(key: str, value: Any, upload: Callable[[str], str]) -> str:
    match = UPLOAD.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise VqclipError(f"{key}: the page can use only images uploaded to it (upload:ID), not "
                          f"{str(value)[:60]!r}")
    return upload(match.group(1)) + match.group(2)


def plan(job: dict, upload: Callable[[str], str], *, allow_paths: bool = False,
         device: Optional[str] = None) -> GenerateConfig | Batch:
    """The checked job (or batch) of a page's job, quiet (no progress bar on the server's terminal), on the server's
    device unless it names one."""
    check_size(job)
    job = dict(job) if allow_paths else check_safe(job, upload)
    job["output"] = {**(job.get("output") or {}), "progress": False} if isinstance(job.get("output") or {}, dict) \
        else job.get("output")
    if device and "device" not in job:
        job["device"] = device
    return plan_jobs([("job", job)])[0]  # expanded as `vqclip run` expands it (a sweep, n images)


def page_text(message: str, field: Optional[str], labels: bool = True) -> str:
    """A one-line error as the page shows it: without the source ("job: "), and naming what the page shows instead of
    command-line flags: with `labels` (an error of the form) the field's label for the key it starts with and for
    any flag; without (an error of the YAML box) the job key for any flag."""
    text = re.sub(r"^(job|command line)( [^:]*)?: ", "", message)
    names = {o["key"]: o["label"] for o in form_options()}
    if labels and field in names:
        text = re.sub(rf"^{re.escape(field)}(?=(\[\d*\])?:)", names[field], text)
    flags = {o.flag: f"'{label_of(o)}'" if labels else o.key.replace("[]", "") for o in walk(JobConfig) if o.flag}
    return re.sub(r"(?<![\w-])--[a-z][\w-]*", lambda m: flags.get(m.group(0), m.group(0)), text)


def field_of(message: str) -> Optional[str]:
    """The job key a one-line error is about (for showing it next to its field), or None."""
    if message.startswith("yaml:"):
        return "yaml"
    text = re.sub(r"^(job|command line)( [^:]*)?: ", "", message)
    for key in KEYS:
        if re.match(re.escape(key) + r"(\[\d*\])?(\.|:|\s|$)", text) or re.search(
                r"(?<![\w.])" + re.escape(key) + r"(\[\d*\])?:", text):
            return key
    if "model preset" in text:
        return "model"
    return None
