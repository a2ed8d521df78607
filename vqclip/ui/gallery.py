"""The outputs folder as the page sees it: its runs and batches newest first, each run's files, its job for "edit and
run again", and the one check every served path passes (inside the folder, a known file type, no way out)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import yaml
from starlette.exceptions import HTTPException

from ..config import to_dict
from ..errors import VqclipError
from ..files.images import read_metadata
from ..files.jobyaml import read_yaml
from ..files.runfolder import FINAL_FILE, JOB_FILE, LATEST_FILE
from ..runs.batch import GRID, RECORD
from ..runs.jobs import build_config, png_layer
from .jobs import UPLOAD, UPLOAD_KEYS

MAX_ANSWER = 1 << 20  # characters of a run's job as JSON; any real job is a few KB
UPLOADS = ".uploads"  # uploaded images, inside the outputs folder, named by their random id
SERVED = {".png": "image/png", ".mp4": "video/mp4", ".gif": "image/gif", ".yaml": "text/yaml"}
PAGES = {"report.html", "batch.html"}  # the only HTML served: a run's report and a batch's ranking (no script in them)
PLOTS = "report/*.png"  # a run's report plots
VIDEOS = ("*.mp4", "*.gif")
SKIP = {"clip", "vqgan", "guide", "device", "output.dir", "output.progress"}  # the preset's, or the server's
MAX_NAME = 1024  # characters of a path asked for; no file of a run has a longer one


def safe_file(outputs: Path, name: str, *, folder: bool = False) -> Path:
    """The file (or run folder) `name` under `outputs`; HTTP 400/404 for anything else: `..`, an absolute path, a
    NUL byte, a name too long, a symlink leading out (or in a loop), a file type the page does not show."""
    if len(name) > MAX_NAME:
        raise HTTPException(400, f"{name[:80]!r}...: too long a path ({len(name)} characters; at most {MAX_NAME})")
    parts = name.replace("\\", "/").split("/")
    if "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise HTTPException(400, f"{name[:80]!r}: not a path inside the outputs folder")
    try:
        path = (outputs / name).resolve()
        inside = path == outputs or outputs in path.parents
        kind = "folder" if path.is_dir() else "file" if path.is_file() else None
    except (OSError, RuntimeError):  # a name too long for the file system, a loop of symlinks: nothing to serve
        path, inside, kind = outputs / name, True, None
    if not inside:
        raise HTTPException(400, f"{name[:80]!r}: leads out of the outputs folder")
    if folder:
        if kind != "folder" or path == outputs:
            raise HTTPException(404, f"{name[:80]!r}: no such run")
        return path
    if path.name in PAGES and kind == "file":  # a run's report, a batch's ranking: the only HTML served
        return path
    if path.suffix.lower() not in SERVED:
        raise HTTPException(400, f"{name[:80]!r}: only images, videos and job files are served")
    if kind != "file":
        raise HTTPException(404, f"{name[:80]!r}: no such file")
    return path


def shown(outputs: Path, path: Path) -> bool:
    """Whether the page may show (and read) `path`: a file that resolves inside `outputs`, not through a symlink out."""
    try:
        return path.is_file() and outputs in path.resolve().parents
    except (OSError, RuntimeError):
        return False


def url(outputs: Path, path: Path) -> str:
    return "/files/" + path.relative_to(outputs).as_posix()


def run_files(outputs: Path, folder: Path) -> dict[str, Any]:
    """URLs of a run's (or batch's) final image, latest frame, video, grids, job, report and report plots."""
    out: dict[str, Any] = {"name": folder.relative_to(outputs).as_posix()}
    for key, file in (("final", FINAL_FILE), ("latest", LATEST_FILE), ("job", JOB_FILE), ("grid", GRID),
                      ("batch", RECORD), ("report", "report.html"), ("ranking", "batch.html")):
        if shown(outputs, folder / file):
            out[key] = url(outputs, folder / file)
    videos = sorted(p for pattern in VIDEOS for p in folder.glob(pattern)
                    if not p.name.startswith(".") and shown(outputs, p))
    if videos:
        out["video"] = url(outputs, videos[0])
    grids = sorted(p for p in folder.glob("grid-*.png") if shown(outputs, p))
    if grids:
        out["grids"] = [url(outputs, g) for g in grids]
    plots = sorted(p for p in folder.glob(PLOTS) if shown(outputs, p))
    if plots:
        out["plots"] = [url(outputs, p) for p in plots]
    return out


def _summary(outputs: Path, folder: Path) -> Optional[dict]:
    files = run_files(outputs, folder)
    if not any(k in files for k in ("final", "job", "grid", "batch")):
        return None
    info: dict[str, Any] = {**files, "date": folder.stat().st_mtime, "kind": "batch" if "batch" in files else "run"}
    try:
        if "final" in files:
            meta = read_metadata(folder / FINAL_FILE)
            info.update(prompt=meta.get("prompt"), seed=meta.get("seed"), steps=meta.get("steps_done"),
                        stopped=meta.get("stopped"))
        elif "job" in files:
            job = read_yaml(folder / JOB_FILE, "job file") or {}
            info.update(prompt=job.get("prompt"), seed=job.get("seed"), steps=job.get("steps"), running=True)
        else:
            record = read_yaml(folder / RECORD, "batch record") or {}
            info.update(prompt=folder.name, keys=record.get("keys"),
                        members=[r.get("folder") or r.get("name") for r in record.get("runs", [])
                                 if isinstance(r, dict)])
        branch = (read_yaml(folder / JOB_FILE, "job file") or {}).get("branch") if "job" in files else None
        if isinstance(branch, dict) and isinstance(branch.get("parent"), str) and branch["parent"]:
            step = branch.get("step")
            info.update(parent=branch["parent"][:MAX_NAME],
                        branch_step=step if isinstance(step, int) and not isinstance(step, bool) else None)
    except (VqclipError, OSError, yaml.YAMLError, AttributeError):  # a damaged run is listed, without its details
        pass
    info["thumb"] = files.get("final") or files.get("grid") or files.get("latest")
    return info


def list_runs(outputs: Path) -> list[dict]:
    """The runs and batches directly in `outputs`, newest first (a batch's own runs are listed with it)."""
    found = []
    for folder in outputs.iterdir():
        if folder.name.startswith(".") or not folder.is_dir() or folder.is_symlink():
            continue
        info = _summary(outputs, folder)
        if info is not None:
            if info["kind"] == "batch":
                info["runs"] = [s for s in (_summary(outputs, f) for f in sorted(folder.iterdir())
                                            if f.is_dir() and not f.is_symlink()) if s]
            found.append(info)
    return under_parents(sorted(found, key=lambda i: i["date"], reverse=True))


def under_parents(runs: list[dict]) -> list[dict]:
    """The listing with each branch (a run whose job names its `branch.parent`) in its parent's `branches`, by the
    step it branched at; a branch whose parent is not listed stays in the listing itself."""
    names = {r["name"]: r for r in runs}
    children: dict[str, list[dict]] = {}
    for run in runs:
        if run.get("parent") in names and run["parent"] != run["name"]:
            children.setdefault(run["parent"], []).append(run)
    top, placed = [r for r in runs if r.get("parent") not in names or r["parent"] == r["name"]], set()
    stack = list(top)
    while stack:  # from the top down, so a loop of parents (a damaged job.yaml) cannot hide a run or recurse
        run = stack.pop()
        placed.add(run["name"])
        kids = sorted((c for c in children.get(run["name"], []) if c["name"] not in placed),
                      key=lambda c: (c["branch_step"] or 0, c["name"]))
        if kids:
            run["branches"] = kids
            placed.update(c["name"] for c in kids)
            stack.extend(kids)
    return top + [r for r in runs if r["name"] not in placed]


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def _nest(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def edit_job(outputs: Path, folder: Path) -> dict:
    """A run's job as the page's keys (what differs from its preset's defaults; its uploads as upload ids), for "edit
    and run again", as `--from` reads it; with the run's files (none read through a symlink leading out)."""
    if shown(outputs, folder / FINAL_FILE):
        config = png_layer(folder / FINAL_FILE)
    elif shown(outputs, folder / JOB_FILE):
        config = read_yaml(folder / JOB_FILE, "job file") or {}
    else:
        raise VqclipError(f"{folder.name}: holds no job (a batch: open one of its runs)")
    model = config.get("model")
    base = _flat(to_dict(build_config({"model": model} if model else {"vqgan": config.get("vqgan")})))
    uploads = (outputs / UPLOADS).resolve()
    flat, dropped = {}, []
    for key, value in _flat(config).items():
        if key in SKIP or key.split(".")[0] in SKIP or base.get(key) == value:
            continue
        if key in UPLOAD_KEYS:
            value = _as_uploads(value, uploads)
            if value is None:
                dropped.append(key)
                continue
        flat[key] = value
    if model:
        flat["model"] = model
    return {"job": _nest(flat), "dropped": dropped, "files": run_files(outputs, folder)}


def edit_job_json(outputs: Path, folder: Path, limit: int = MAX_ANSWER) -> str:
    """`edit_job` as the JSON the page gets (made where the page's server bounds the work: a job.yaml whose aliases
    expand without end blows up here, not in the server), at most `limit` characters."""
    text = json.dumps(edit_job(outputs, folder))
    if len(text) > limit:
        raise VqclipError(f"{folder.name}: its job is {len(text) >> 10} KB as JSON, far more than any job")
    return text


def _as_uploads(value: Any, uploads: Path) -> Any:
    """Image paths inside the uploads folder as upload ids; None if any is a file from elsewhere."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if item is None:
            out.append(None)
            continue
        path, _, rest = str(item).partition(".png")
        upload = Path(path + ".png")
        if upload.parent.resolve() != uploads or not UPLOAD.fullmatch(f"upload:{upload.stem}"):
            return None
        out.append(f"upload:{upload.stem}{rest}")
    return out if isinstance(value, list) else out[0]
