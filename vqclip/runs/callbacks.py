"""Step callbacks: each is `(event) -> stop?`, sees a read-only `StepEvent`, and may stop the run at the end of the
step. A callback sees the run's own steps; one that also wants best-of-n's trial steps says so with `trials = True`
(`with_trials` marks a plain function)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator, Optional

from tqdm.auto import tqdm

from ..optim.loop import Callback, StepEvent


def with_trials(callback: Callable[[StepEvent], Optional[bool]]) -> Callback:
    """`callback`, marked to see best-of-n's trial steps too (events with `trial` = n and an image per start)."""
    callback.trials = True  # type: ignore[attr-defined]
    return callback


def wants_trials(callback: Callback) -> bool:
    """Whether a callback asked to see best-of-n's trial steps."""
    return bool(getattr(callback, "trials", False))


class SaveFrames:
    """Write the scored image every `every` steps (step 0 included) through `write(step, image)`."""

    def __init__(self, write: Callable, every: int):
        self.write, self.every = write, every

    def __call__(self, event: StepEvent) -> None:
        if self.every > 0 and event.step % self.every == 0:
            self.write(event.step, event.image)


class ProgressBar:
    """A tqdm bar on stderr with step, loss and it/s; best-of-n trial steps count once and are labelled with the
    starts."""

    trials = True

    def __init__(self, total: int, initial: int = 0, desc: str = "generate"):
        self.desc, self.trial = desc, 0
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=True)

    def __call__(self, event: StepEvent) -> None:
        if event.trial != self.trial:
            self.trial = event.trial
            self.bar.set_description(f"{self.desc} ({event.trial} starts)" if event.trial else self.desc, refresh=False)
        self.bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        ahead = event.step + 1 - self.bar.n if event.frame is None else 1  # past trials another image of its batch ran
        self.bar.update(max(1, ahead))

    def close(self) -> None:
        self.bar.close()


class StopOnFlag:
    """Stop at the end of the current step once `flag` is set (by Ctrl-C, a GUI, a time limit...), trials too."""

    trials = True

    def __init__(self, flag: threading.Event):
        self.flag = flag

    def __call__(self, event: StepEvent) -> bool:
        return self.flag.is_set()


class StopAfter:
    """Stop after a given number of steps in this process, trial steps included (tests, time-boxed runs)."""

    trials = True

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
