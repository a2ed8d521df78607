"""What a report is made from, read from a run folder: the loss per step and term (losses.csv), the judge's scores
(scores.json), the speed (run.json), the job and its steers and story keyframes (job.yaml), and the saved frames;
each missing part named in one line."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ..errors import VqclipError
from ..files import scores as scores_file
from ..files.runfolder import FINAL_FILE, FRAMES_DIR, JOB_FILE, STATE_FILE

log = logging.getLogger("vqclip")
LOSSES_FILE, SPEED_FILE, SCORES_FILE = "losses.csv", "run.json", scores_file.SCORES_FILE
STEP, TOTAL = "step", "total"  # losses.csv's first two columns; then one per term, in the order they first appear
RUN_MARKERS = (JOB_FILE, FINAL_FILE, FRAMES_DIR, LOSSES_FILE)  # any of them: the folder holds a run


def read_losses(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    """losses.csv as (term names, rows {"step": s, "total": x, term: x, ...}) in file order; a row that does not
    parse (a file cut by hand) or a last line a kill cut short is skipped, an empty cell is a term that step did not
    have."""
    text = Path(path).read_text(encoding="utf-8")
    text = text[:text.rfind("\n") + 1]  # a last line without its end: a write cut short, not a row
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[:2] != [STEP, TOTAL]:
        return [], []
    rows = []
    for cells in reader:
        try:
            row: dict[str, float] = {STEP: int(cells[0])}
            row.update({k: float(v) for k, v in zip(header[1:], cells[1:]) if v != ""})
        except (ValueError, IndexError):
            continue
        if TOTAL in row:
            rows.append(row)
    return header[2:], rows


def read_scores(folder: Path) -> Optional[dict]:
    """scores.json of the held-out judge (frames [{step, file, judge, aesthetic, guide}] by step, best, stopped_by),
    read and checked by `vqclip.files.scores`; None when the run has none, or a broken one (said in the log: the
    report goes on without it)."""
    try:
        data = scores_file.read_scores(Path(folder))
    except VqclipError as exc:
        log.warning("%s", exc)
        return None
    return None if data is None else {**data, "frames": sorted(data["frames"], key=lambda f: f["step"])}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class RunRecord:
    """A run folder as its report sees it; `missing` says, one line each, what is not there and what that costs."""

    folder: Path
    job_text: str = ""
    job: dict = field(default_factory=dict)
    terms: list[str] = field(default_factory=list)
    losses: list[dict[str, float]] = field(default_factory=list)
    scores: Optional[dict] = None
    speed: list[dict] = field(default_factory=list)
    frames: list[tuple[int, Path]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def markers(self) -> list[tuple[int, str]]:
        """(step, label) of the job's story keyframes and steers, by step: where the loss curve is marked."""
        marks = []
        for kind in ("story", "steer"):
            for entry in self.job.get(kind) or []:
                if isinstance(entry, dict) and _number(entry.get("at")):
                    what = entry.get("prompt") or (f"lr {entry['lr']}" if entry.get("lr") is not None else "")
                    marks.append((int(entry["at"]), f"{kind}: {what}" if what else kind))
        return sorted(marks, key=lambda m: m[0])


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` holds a vqclip run (its job.yaml, final.png, frames/ or losses.csv)."""
    return folder.is_dir() and any((folder / m).exists() for m in RUN_MARKERS)


def read_run(folder: Path) -> RunRecord:
    """Everything a report shows of the run in `folder`; a folder that holds no run is a one-line error."""
    folder = Path(folder)
    if not is_run_folder(folder):
        what = "no such folder" if not folder.exists() else "not a folder" if not folder.is_dir() else (
            f"holds no {JOB_FILE}, {FINAL_FILE} or {FRAMES_DIR}/, so it is not a vqclip run folder")
        raise VqclipError(f"{folder}: {what}; give a run's folder (outputs/<run>) or a batch's")
    rec = RunRecord(folder)
    if (folder / JOB_FILE).is_file():
        rec.job_text = (folder / JOB_FILE).read_text(encoding="utf-8", errors="replace")
        try:
            job = yaml.safe_load(rec.job_text)
        except yaml.YAMLError:
            job = None
        rec.job = job if isinstance(job, dict) else {}
        if not rec.job:
            rec.missing.append(f"{JOB_FILE} is not a job mapping: no story or steer marks")
    else:
        rec.missing.append(f"no {JOB_FILE}: the job is not shown")
    if (folder / LOSSES_FILE).is_file():
        rec.terms, rec.losses = read_losses(folder / LOSSES_FILE)
    if not rec.losses:
        why = "is empty or not a loss table" if (folder / LOSSES_FILE).is_file() else (
            "(a run from before vqclip recorded them)")
        held = f" and {STATE_FILE} holds no loss history" if (folder / STATE_FILE).is_file() else ""
        rec.missing.append(f"no losses: {LOSSES_FILE} {why}{held}; no loss plot")
    rec.scores = read_scores(folder)
    if rec.scores is None or not rec.scores["frames"]:
        rec.missing.append(f"no judge scores ({SCORES_FILE}): run with output.judge")
    rec.speed = _speed(folder / SPEED_FILE)
    if not rec.speed:
        rec.missing.append(f"no speed ({SPEED_FILE}): it/s and memory are not shown")
    frames_dir = folder / FRAMES_DIR
    rec.frames = sorted((int(p.stem), p) for p in frames_dir.glob("*.png") if p.stem.isdigit()) \
        if frames_dir.is_dir() else []
    if not rec.frames:
        rec.missing.append(f"no saved frames in {FRAMES_DIR}/: no strip of frames")
    return rec


def _speed(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    try:
        parts = json.loads(path.read_text(encoding="utf-8")).get("parts", [])
    except (ValueError, OSError, AttributeError):
        return []
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []
