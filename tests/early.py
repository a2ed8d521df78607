"""Fresh interpreters started early: a slow process a test reads (a console script, an interpreter checking its own
imports) starts with its fixture, only when that test is selected, and runs on the core the suite (one torch thread)
leaves idle instead of being waited out; it is killed at the end if never read."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional


def selected(request, test: Optional[str] = None, fixture: Optional[str] = None) -> bool:
    """Is a test named `test`, or one using the fixture `fixture`, among the session's selected tests?"""
    return any(item.name == test or fixture in getattr(item, "fixturenames", ())
               for item in request.session.items)


@contextmanager
def started(argv: list[str], home: Path) -> Iterator[subprocess.Popen]:
    """`argv` running with pipes for its text output and its own VQCLIP_HOME; killed on leaving if still running."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "VQCLIP_HOME": str(home)})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
