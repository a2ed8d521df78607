"""Functions for tests to run in spawned processes (vqclip.train.distributed.spawn), in a module light to import."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

from vqclip.errors import VqclipError


def fail_on_the_second(group, marker: str, folder: str) -> None:
    """Each process says a note, a warning and an error in vqclip's log; the second then fails with a one-line error
    once the parent has heard the first's error (it notes that as `folder`/heard: the log arrives while the processes
    run), while the first would go on for an hour."""
    log = logging.getLogger("vqclip")
    for say in (log.info, log.warning, log.error):
        say("%s from process %d", say.__name__, group.rank)
    if group.rank == 1:
        waited = time.monotonic()
        while not Path(folder, "heard").is_file():
            if time.monotonic() - waited > 30:
                raise VqclipError("the parent never heard the first process")
            time.sleep(0.01)
        raise VqclipError(f"{marker}: unreadable")
    threading.Event().wait(3600)  # only the end of every process lets the run return


def interrupt_the_parent(group, folder: str) -> None:
    """Each process notes its pid in `folder`; the first then says so in vqclip's log and sends the parent Ctrl-C; both
    would go on for an hour."""
    Path(folder, f"pid{group.rank}").write_text(str(os.getpid()))
    if group.rank == 0:
        while not Path(folder, "pid1").is_file():
            time.sleep(0.01)
        logging.getLogger("vqclip").info("process 0 sends Ctrl-C")
        os.kill(os.getppid(), signal.SIGINT)
    threading.Event().wait(3600)  # only the parent's ending of every process lets them stop
