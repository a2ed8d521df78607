"""Atomic writes: each file vqclip writes appears whole or not at all, through one temporary name in the same folder
and one rename, so a kill or a full disk mid-write leaves the previous file (or none), never half of one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from ..errors import WriteError, write_error

TEMP_GLOB = ".*.tmp-*"  # what a write in progress (or one killed mid-way) is called, for cleanup and tests


def temp_path(path: Path) -> Path:
    """The temporary name of a write to `path`: hidden, in the same folder, with the writer's pid, and with the same
    suffix (writers such as ffmpeg and PIL pick the format from it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write `path` through; on success it is renamed onto `path` (after an fsync when
    asked), on any error removed, the old file left as it was. An OSError of the write (a full disk, no permission,
    the folder gone) becomes a `WriteError` naming `path` and the fix."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # the folder may be gone or unwritable too
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise write_error(path, exc) from None
        raise


def write_bytes(path: Path, data: bytes, fsync: bool = False) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path, fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path, text: str, fsync: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"), fsync)
