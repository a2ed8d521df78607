"""Step callbacks: save frames, draw a progress bar, stop on Ctrl-C. Each is `(event) -> stop?`."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Iterator

from torch import Tensor

from .generator import StepEvent
from .outputs import save_png


def frame_path(frames_dir: Path, step: int) -> Path:
    """frames/NNNNNN.png for a step."""
    return frames_dir / f"{step:06d}.png"


class SaveFrames:
    """Write the scored image every `every` steps (step 0 included) as frames/NNNNNN.png, atomically. During the
    trials of best of n, every start's frames are held until the pick is known (`keep_start`); then the chosen
    start's are written, so the video shows its whole run."""

    def __init__(self, frames_dir: Path, every: int):
        self.dir, self.every = Path(frames_dir), every
        self.saved: list[Path] = []
        self.pending: list[tuple[int, Tensor]] = []  # (step, images [n,3,H,W]) of trial steps

    def __call__(self, event: StepEvent) -> None:
        if not event.trial and self.pending:  # the first step after the pick
            self.keep_start(event.generation.start)
        if self.every > 0 and event.step % self.every == 0:
            if event.trial:
                self.pending.append((event.step, event.image.detach().cpu()))
            else:
                self.saved.append(save_png(event.image, frame_path(self.dir, event.step)))

    def keep_start(self, start: int) -> None:
        """Write the held trial frames of the start that went on; the other starts' are dropped."""
        for step, images in self.pending:
            self.saved.append(save_png(images[start:start + 1], frame_path(self.dir, step)))
        self.pending.clear()


class ProgressBar:
    """A tqdm bar on stderr with step, loss and it/s; best-of-n trial steps are labelled with the starts."""

    def __init__(self, total: int, initial: int = 0, desc: str = "generate"):
        from tqdm.auto import tqdm

        self.desc, self.trial = desc, 0
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=True)

    def __call__(self, event: StepEvent) -> None:
        if event.trial != self.trial:
            self.trial = event.trial
            self.bar.set_description(f"{self.desc} ({event.trial} starts)" if event.trial else self.desc, refresh=False)
        self.bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class StopOnFlag:
    """Stop at the end of the current step once `flag` is set (by Ctrl-C, a GUI, a time limit...)."""

    def __init__(self, flag: threading.Event):
        self.flag = flag

    def __call__(self, event: StepEvent) -> bool:
        return self.flag.is_set()


class StopAfter:
    """Stop after a given number of steps in this process (for tests and time-boxed runs)."""

    def __init__(self, steps: int):
        self.left = steps

    def __call__(self, event: StepEvent) -> bool:
        self.left -= 1
        return self.left <= 0


@contextlib.contextmanager
def sigint_flag() -> Iterator[threading.Event]:
    """While active, Ctrl-C sets the returned flag instead of raising; a second Ctrl-C raises as usual."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
