"""The one exception type that reaches users: a problem with their input, reported as one line."""

import errno
import os
import reprlib
from pathlib import Path


class VqclipError(Exception):
    """A problem the user can fix (bad input, missing file, unknown name); the CLI prints it and exits 2."""


class UnsafeCheckpointError(VqclipError):
    """A checkpoint whose unpickling would call something other than tensor/collection rebuilding."""


def reason(exc: BaseException, limit: int = 200, whole: bool = False) -> str:
    """An exception as one line for an error message, cut at `limit`: its first non-blank line, or with `whole` all
    of it with the line breaks folded (YAML and state-dict errors put the useful part below the first line); its
    type name when it says nothing."""
    text = " ".join(str(exc).split()) if whole else next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    text = text or type(exc).__name__
    if len(text) > limit:  # cut at a word, never inside one
        text = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + " ..."
    return text


SHOWN = 80  # the longest value an error message echoes whole; a longer one is cut to its first CUT_TO characters
CUT_TO = 60


def cut(text: str) -> str:
    """`text` whole when it is at most SHOWN characters, else its first CUT_TO and '...': an error message echoes a
    value, but a 5,000-character value must not make a 5,000-character line."""
    return text if len(text) <= SHOWN else text[:CUT_TO] + "..."


PATH_SHOWN = 200  # a path is echoed whole up to this length: the file name at its end is what the reader needs


def cut_path(text: str) -> str:
    """A path as an error message echoes it: whole up to PATH_SHOWN characters, else its first and last characters
    around '...' (PATH_SHOWN in all), so a deep folder still shows where it starts and which file it names."""
    if len(text) <= PATH_SHOWN:
        return text
    keep = (PATH_SHOWN - 3) // 2
    return text[:keep] + "..." + text[-keep:]


def shown_path(path: str | Path) -> str:
    """`path` quoted as `shown` quotes a text, cut as `cut_path` cuts it (never to its first characters only)."""
    return repr(cut_path(str(path)))


_REPR = reprlib.Repr()  # containers written in part (6 items, 3 levels deep): no huge value is written out whole
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 6
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, SHOWN, SHOWN, SHOWN


def shown(value) -> str:
    """A value as an error message echoes it: text quoted ('abc'), anything else as Python writes it; a text of
    over SHOWN characters as its first CUT_TO and '...', anything else cut the same way (`cut`)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= SHOWN else repr(value[:CUT_TO]) + "..."
    try:
        return cut(_REPR.repr(value))
    except ValueError:  # an integer of over 4,300 digits, which Python will not write out
        return "an integer too large to write out"


def missing(path: str | Path, what: str) -> str:
    """`PATH: no such WHAT`, or `PATH: is a folder, not a WHAT` where a folder stands in for a file (PATH cut)."""
    article = "an" if what[0] in "aeiou" else "a"
    bad = path_problem(path)
    if bad:
        return f"{shown_path(path)}: {bad}"
    name = cut_path(str(path))
    return f"{name}: is a folder, not {article} {what}" if Path(path).is_dir() else f"{name}: no such {what}"


def path_problem(path: str | Path) -> str | None:
    """Why `path` can never name a file (a NUL byte, a name too long for the filesystem), or None."""
    text = str(path)
    if "\0" in text:
        return "contains a NUL byte (\\0), which no file name can hold"
    try:
        os.stat(text)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return "is too long a name for the filesystem"
    return None


class WriteError(VqclipError, OSError):
    """A file vqclip writes could not be written (a full disk, no permission, its folder removed); what was written
    before is intact. Still an OSError (`errno`, `filename`), so code that tolerates a failed write goes on doing so."""

    def __init__(self, message: str, path: Path, code: int | None = None):
        super().__init__(code, message, str(path))
        self.message, self.path = message, Path(path)

    def __str__(self) -> str:
        return self.message

    def with_hint(self, hint: str) -> "WriteError":
        """The same error with more of the fix said (e.g. the resume command), on the same line."""
        return WriteError(f"{self.message}; {hint}", self.path, self.errno)


_WRITE_FIXES = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space (the disk quota is full)",
                errno.EACCES: "make its folder writable", errno.EPERM: "make its folder writable",
                errno.EROFS: "the filesystem is read-only; write somewhere else",
                errno.ENOENT: "its folder was removed", errno.ENOTDIR: "its folder was removed or replaced"}


WRITE_FAULTS = frozenset(_WRITE_FIXES)  # errnos that are the world's fault (disk, permissions), not vqclip's


def write_error(path: str | Path, exc: OSError) -> WriteError:
    """`cannot write PATH: No space left on device; free some space` from the OSError of a write to `path`."""
    fix = _WRITE_FIXES.get(exc.errno or -1)
    why = exc.strerror or reason(exc)
    return WriteError(f"cannot write {path}: {why}" + (f"; {fix}" if fix else ""), Path(path), exc.errno)
