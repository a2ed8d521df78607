"""Is a model file on disk the file it must be? Size, sha256 against a pin or the first download's record, no web page.

Files without a pinned sha256 get theirs recorded in `<home>/manifest.json` on first download (or first sight) and
are checked against it on every later load, so a corrupted or swapped file is caught.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from filelock import FileLock

from ..errors import VqclipError, reason
from ..files.atomic import write_text
from .presets import FileSpec

log = logging.getLogger("vqclip")


def lock_for(path: Path) -> FileLock:
    """An inter-process lock for writing `path`, kept as `.locks/<name>.lock` beside it (as huggingface_hub does)."""
    folder = Path(path).parent / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / (Path(path).name + ".lock")))


class IntegrityError(Exception):
    """Bytes that are not the file (wrong size or sha256, a web page): discard them, or try another host."""


class CorruptFileError(VqclipError):
    """A model file on disk whose size or sha256 is not what it must be."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path} is corrupt or was replaced: it is {reason}; delete it and run "
                         "`vqclip models download` to fetch it again")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def looks_like_web_page(path: Path) -> bool:
    """True when a file starts like an HTML page: what dead hosts send instead of a model."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


class Manifest:
    """The sha256 and size of every unpinned file, recorded on first download (`<home>/manifest.json`)."""

    def __init__(self, path: Path):
        self.path = Path(path).absolute()

    def _load(self) -> dict:
        """The manifest's `files` mapping (empty when there is no manifest yet)."""
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            files = data["files"]
            if not isinstance(files, dict):
                raise TypeError("files is not a mapping")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VqclipError(f"{self.path}: unreadable checksum manifest ({reason(exc)}); delete it and run "
                              "`vqclip models verify` to record the files on disk again") from None
        return files

    def key(self, path: Path) -> str:
        """How `path` is named in the manifest: relative to the manifest's folder when inside it."""
        path = Path(path).absolute()
        try:
            return path.relative_to(self.path.parent).as_posix()
        except ValueError:
            return str(path)

    def entry(self, path: Path) -> dict | None:
        """The recorded {sha256, size, source, recorded} of `path`, or None."""
        return self._load().get(self.key(path))

    def record(self, path: Path, sha256: str, size: int, source: str) -> bool:
        """Remember `path`'s checksum and size (written atomically; concurrent runs do not lose each other's).

        A folder that cannot be written (a shared, read-only model store) only costs the record: a warning, False."""
        try:
            with self._lock():
                files = self._load()
                files[self.key(path)] = {"sha256": sha256, "size": size, "source": source,
                                         "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                self._write(files)
        except OSError as exc:
            log.warning("could not record the sha256 of %s in %s (%s); later loads cannot check it", Path(path).name,
                        self.path, exc.strerror or exc)
            return False
        return True

    def forget(self, path: Path) -> bool:
        """Drop `path`'s record (when an upstream file legitimately changed); True if there was one."""
        with self._lock():
            files = self._load()
            if files.pop(self.key(path), None) is None:
                return False
            self._write(files)
            return True

    def _lock(self) -> FileLock:
        """The lock every read-modify-write of the manifest holds."""
        return lock_for(self.path)

    def _write(self, files: dict) -> None:
        """Write the manifest via a temporary file and an atomic rename."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text(self.path, json.dumps({"version": 1, "files": files}, indent=2, sort_keys=True) + "\n")


def check_bytes(path: Path, spec: FileSpec, entry: dict | None) -> tuple[str, int]:
    """(sha256, size) of `path` after checking it against the pin, else the manifest entry; raises IntegrityError."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise IntegrityError(f"{size} bytes, but it must be {spec.size}")
    if looks_like_web_page(path):
        raise IntegrityError("a web page (an error or login page), not the model file")
    digest = sha256_file(path)
    if spec.sha256 is not None and digest != spec.sha256:
        raise IntegrityError(f"sha256 {digest[:16]}..., but the preset pins {spec.sha256[:16]}...")
    if spec.sha256 is None and entry is not None and (entry.get("sha256"), entry.get("size")) != (digest, size):
        raise IntegrityError(f"sha256 {digest[:16]}... ({size} bytes), but the first download recorded "
                              f"{str(entry.get('sha256'))[:16]}... ({entry.get('size')} bytes)")
    return digest, size


def verify_file(path: Path, spec: FileSpec, manifest: Manifest | None = None) -> str:
    """Check a file on disk against its pinned sha256, else its manifest record (recording it if new); its sha256."""
    path = Path(path).absolute()
    if not path.is_file():
        raise VqclipError(f"{path}: missing; run `vqclip models download` or put the file there")
    entry = manifest.entry(path) if manifest is not None else None
    try:
        digest, size = check_bytes(path, spec, entry)
    except IntegrityError as exc:
        raise CorruptFileError(path, str(exc)) from None
    if manifest is not None and spec.sha256 is None and entry is None:
        if manifest.record(path, digest, size, source="found on disk"):
            log.info("recorded the sha256 of %s in %s; later loads are checked against it", path.name, manifest.path)
    return digest
