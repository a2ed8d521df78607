"""Functions for tests to run in spawned processes (vqclip.train.distributed.spawn), in a module light to import."""

from __future__ import annotations

import threading

from vqclip.errors import VqclipError


def fail_on_the_second(group, marker: str) -> None:
    """The second process fails with a one-line error while the first would go on for an hour."""
    if group.rank == 1:
        raise VqclipError(f"{marker}: unreadable")
    threading.Event().wait(3600)  # only the end of every process lets the run return
