"""The run folder: one place that knows its layout (job.yaml, frames/NNNNNN.png, latest.png, final.png, the video,
state.pt), claims it once and never overwrites a run."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Optional

from ..errors import VqclipError, WriteError, path_problem, write_error
from .atomic import TEMP_GLOB, atomic_path, write_text

JOB_FILE, FINAL_FILE, STATE_FILE, FRAMES_DIR = "job.yaml", "final.png", "state.pt", "frames"
LATEST_FILE = "latest.png"  # the newest saved frame, replaced atomically: a run can be watched in a file browser
MARKERS = (FINAL_FILE, JOB_FILE, FRAMES_DIR)  # any of them: the folder holds a run


def slug(text: str, limit: int = 40) -> str:
    """A filesystem-safe short name for a prompt."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "run"


def default_run_dir(prompt: str, root: Path = Path("outputs")) -> Path:
    """outputs/<timestamp>-<prompt-slug>, made unique with a counter."""
    base = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug(prompt)}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


class RunFolder:
    """A run's folder and the paths of its files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def job(self) -> Path:
        return self.path / JOB_FILE

    @property
    def final(self) -> Path:
        return self.path / FINAL_FILE

    @property
    def state(self) -> Path:
        return self.path / STATE_FILE

    @property
    def latest(self) -> Path:
        return self.path / LATEST_FILE

    @property
    def frames_dir(self) -> Path:
        return self.path / FRAMES_DIR

    def frame(self, index: int) -> Path:
        """frames/NNNNNN.png for a step (or, in a restyle, an input frame)."""
        return self.frames_dir / f"{index:06d}.png"

    def frames(self) -> list[tuple[int, Path]]:
        """(index, path) of the frames on disk, in order."""
        found = [(int(p.stem), p) for p in self.frames_dir.glob("*.png") if p.stem.isdigit()]
        return sorted(found)

    def show_latest(self, frame: Path) -> Path:
        """Make latest.png the frame just written, atomically (a hard link where the filesystem has them: no copy, no
        more space; else a copy), so a viewer never sees half a PNG."""
        with atomic_path(self.latest) as tmp:
            try:
                os.link(frame, tmp)
            except OSError:  # no hard links here (FAT, some network mounts): copy it
                tmp.unlink(missing_ok=True)
                tmp.write_bytes(Path(frame).read_bytes())
        return self.latest

    def video(self, name: str, fmt: str) -> Path:
        return self.path / f"{name}.{fmt}"

    def check_new(self) -> "RunFolder":
        """Refuse a folder that is a file or already holds a run (runs are never overwritten), or cannot be made."""
        path = self.path
        bad = path_problem(path)
        if bad:
            raise VqclipError(f"output.dir: {str(path)!r} {bad}; choose another --out")
        if path.exists() and not path.is_dir():
            raise VqclipError(f"{path}: exists and is not a folder; choose another --out")
        if path.is_dir() and any((path / m).exists() for m in MARKERS):
            raise VqclipError(f"{path}: already holds a run; choose another --out or output.dir (runs are never "
                              "overwritten)")
        nearest = next(p for p in (path, *path.parents) if p.exists())  # the folder the run's folders are made in
        if not nearest.is_dir():
            raise VqclipError(f"{path}: {nearest} is not a folder; choose another --out")
        if not os.access(nearest, os.W_OK | os.X_OK):
            raise VqclipError(f"{path}: cannot write in {nearest}; choose another --out")
        return self

    def claim(self, job_text: str) -> "RunFolder":
        """Create the folder with frames/ and write job.yaml, after `check_new`."""
        self.check_new()
        try:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VqclipError(f"{self.path}: cannot make the run folder ({exc.strerror}); choose another --out") from None
        try:
            write_text(self.job, job_text)
        except WriteError:
            self.release()  # nothing of the run was written: leave no folder that blocks this --out
            raise
        return self

    def open_existing(self) -> "RunFolder":
        """A folder that holds a run (to resume): its job.yaml must be there."""
        if not self.path.is_dir():
            why = ("is a file, not a run folder; give the folder that holds it" if self.path.exists()
                   else "no such run folder")
            raise VqclipError(f"{self.path}: {why}")
        if not self.job.is_file():
            raise VqclipError(f"{self.path}: holds no {JOB_FILE}, so it is not a vqclip run folder that can be resumed")
        try:
            self.frames_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise write_error(self.frames_dir, exc) from None
        return self

    def release(self) -> None:
        """Undo `claim` for a run that failed before making anything (only job.yaml and an empty frames/), so the
        failure leaves no folder that blocks the same --out; anything more is kept."""
        path = self.path
        if not path.is_dir() or {p.name for p in path.iterdir()} - {JOB_FILE, FRAMES_DIR}:
            return
        if self.frames_dir.is_dir() and any(self.frames_dir.iterdir()):
            return
        self.job.unlink(missing_ok=True)
        if self.frames_dir.is_dir():
            self.frames_dir.rmdir()
        path.rmdir()

    def leftovers(self) -> list[Path]:
        """Temporary files of writes that were killed mid-way."""
        return [*self.path.glob(TEMP_GLOB), *self.frames_dir.glob(TEMP_GLOB)]


def run_folder(out: Optional[str], prompt: str) -> RunFolder:
    """The folder a new run goes to: `out`, else outputs/<timestamp>-<prompt-slug>; checked, not yet made."""
    return RunFolder(Path(out) if out else default_run_dir(prompt)).check_new()
