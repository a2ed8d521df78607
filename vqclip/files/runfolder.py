"""The run folder: one place that knows its layout (job.yaml, frames/NNNNNN.png, latest.png, final.png, the video,
state.pt), claims it once, never overwrites a run, and is locked while a run writes it (`.lock`: one run at a time)."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Optional

from filelock import FileLock, Timeout

from ..errors import VqclipError, WriteError, path_problem, write_error
from .atomic import TEMP_GLOB, atomic_path, write_text

JOB_FILE, FINAL_FILE, STATE_FILE, FRAMES_DIR = "job.yaml", "final.png", "state.pt", "frames"
MASK_FILE = "mask.png"  # an edit's mask, kept in its run folder and named by its job
LATEST_FILE = "latest.png"  # the newest saved frame, replaced atomically: a run can be watched in a file browser
MARKERS = (FINAL_FILE, JOB_FILE, FRAMES_DIR)  # any of them: the folder holds a run
# held (an OS file lock: released by the system when its process ends, however it ends) while a run writes the folder
LOCK_FILE = ".lock"
SILENT_GLOB = ".*.noaudio.mp4"  # a video before its audio is muxed in (removed after; a kill may leave it)


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
        self._lock: Optional[FileLock] = None
        self.claimed = False  # this object made the run in it (`claim`), so `release` may undo that

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

    def silent_video(self, name: str) -> Path:
        """Where the video is written before the audio is muxed in."""
        return self.path / f".{name}.noaudio.mp4"

    @property
    def locked(self) -> bool:
        """Whether this object holds the folder's lock."""
        return self._lock is not None and self._lock.is_locked

    def lock(self) -> "RunFolder":
        """Hold the folder's lock while a run writes it (again from the same object: counted, as many `unlock`s
        release it); held by another run (a second `vqclip resume`, a run of the same --out), a one-line error. A run
        that was killed holds nothing: the system released its lock, and the file it left is taken over."""
        if self._lock is None:
            self._lock = FileLock(str(self.path / LOCK_FILE), timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            raise VqclipError(f"{self.path}: another vqclip run is writing this folder now; wait until it ends (or "
                              "stop it), then try again") from None
        except OSError as exc:
            raise write_error(self.path / LOCK_FILE, exc) from None
        return self

    def unlock(self) -> None:
        """Release one `lock` of this object (none held: nothing to do)."""
        if self.locked:
            self._lock.release()

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
        """Create the folder, lock it (`lock`: held until `unlock`), and make frames/ and job.yaml, after
        `check_new` (again under the lock, so that two runs of the same --out cannot both claim it)."""
        self.check_new()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock()
            try:
                self.check_new()
                self.frames_dir.mkdir(exist_ok=True)
            except BaseException:
                self.unlock()
                raise
        except OSError as exc:
            if isinstance(exc, VqclipError):
                raise
            raise VqclipError(f"{self.path}: cannot make the run folder ({exc.strerror}); choose another "
                              "--out") from None
        self.claimed = True
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
        """Undo this object's `claim` for a run that failed before making anything (only job.yaml and an empty
        frames/), so the failure leaves no folder that blocks the same --out, and release its lock; anything more is
        kept, and so is a folder this object did not claim."""
        path = self.path
        if not self.claimed or not path.is_dir() or {p.name for p in path.iterdir()} - {JOB_FILE, FRAMES_DIR,
                                                                                      LOCK_FILE}:
            return
        if self.frames_dir.is_dir() and any(self.frames_dir.iterdir()):
            return
        self.job.unlink(missing_ok=True)
        if self.frames_dir.is_dir():
            self.frames_dir.rmdir()
        with contextlib.suppress(OSError):  # still held: no other run takes it before the folder is gone
            (path / LOCK_FILE).unlink(missing_ok=True)
        while self.locked:
            self.unlock()
        with contextlib.suppress(OSError):  # where an open file cannot be removed (Windows), now; a folder that
            (path / LOCK_FILE).unlink(missing_ok=True)  # another run made its own meanwhile is left to it
            path.rmdir()
        self.claimed = False

    def leftovers(self) -> list[Path]:
        """Temporary files of writes that were killed mid-way (an atomic write's temp, a video before its audio)."""
        return [*self.path.glob(TEMP_GLOB), *self.path.glob(SILENT_GLOB), *self.frames_dir.glob(TEMP_GLOB)]

    def remove_leftovers(self) -> list[Path]:
        """Remove `leftovers`, under the lock (no write of another run is in progress); returns what was removed."""
        if not self.locked:
            raise RuntimeError("remove_leftovers needs the folder's lock")
        gone = self.leftovers()
        for p in gone:
            p.unlink(missing_ok=True)
        return gone


def run_folder(out: Optional[str], prompt: str) -> RunFolder:
    """The folder a new run goes to: `out`, else outputs/<timestamp>-<prompt-slug>; checked, not yet made."""
    return RunFolder(Path(out) if out else default_run_dir(prompt)).check_new()
