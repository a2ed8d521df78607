"""The one exception type that reaches users: a problem with their input, reported as one line."""

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


def missing(path: str | Path, what: str) -> str:
    """`PATH: no such WHAT`, or `PATH: is a folder, not a WHAT` where a folder stands in for a file."""
    article = "an" if what[0] in "aeiou" else "a"
    return f"{path}: is a folder, not {article} {what}" if Path(path).is_dir() else f"{path}: no such {what}"
