"""Step callbacks: the frame saver's cadence, the stop flag and step budget, which callbacks see best-of-n's trial
steps, the progress bar's count, and Ctrl-C turned into a flag (a second one raises) only while a run is on."""

import os
import signal
import threading

import pytest
import torch

from vqclip.optim.loop import StepEvent
from vqclip.runs.callbacks import ProgressBar, SaveFrames, StopAfter, StopOnFlag, sigint_flag, wants_trials, \
    with_trials


def event(step: int, **kw) -> StepEvent:
    return StepEvent(step, 10, 0.5, {}, torch.full((1, 3, 2, 2), float(step)), **kw)


@pytest.mark.parametrize("every, saved", [(1, list(range(8))), (3, [0, 3, 6]), (5, [0, 5]), (7, [0, 7]),
                                          (0, [])])
def test_frames_are_saved_every_k_steps_from_step_0(every, saved):
    written = []
    save = SaveFrames(lambda step, image: written.append((step, float(image.max()))), every)
    for s in range(8):
        save(event(s))
    assert written == [(s, float(s)) for s in saved]


def test_the_stop_flag_stops_once_set_and_the_step_budget_after_n_events():
    flag = threading.Event()
    stop = StopOnFlag(flag)
    assert not stop(event(0))
    flag.set()
    assert stop(event(1)) and stop(event(1, trial=3))
    after = StopAfter(3)
    assert [after(event(s, trial=2 if s < 2 else 0)) for s in range(4)] == [False, False, True, True]


def test_only_callbacks_that_ask_see_the_trials():
    plain = lambda e: None  # noqa: E731
    assert not wants_trials(plain) and wants_trials(with_trials(plain))
    assert all(wants_trials(cb) for cb in (StopOnFlag(threading.Event()), StopAfter(1), ProgressBar(1)))
    assert not wants_trials(SaveFrames(print, 1))


def test_the_bar_counts_each_step_once_and_each_restyled_frames_steps(capsys):
    bar = ProgressBar(10, initial=2, desc="resume")
    bar(event(2, trial=3))
    assert bar.bar.n == 3 and bar.bar.desc.startswith("resume (3 starts)")  # best-of-n's trials, named
    for s in (3, 4, 5, 6):
        bar(event(s))
    assert bar.bar.n == 7 and bar.bar.desc.removesuffix(": ") == "resume"
    restyle = ProgressBar(6, desc="restyle")
    for f in range(3):
        for s in range(2):
            restyle(event(s, frame=f))  # the step restarts at 0 each frame
    assert restyle.bar.n == 6
    bar.close(), restyle.close()


def test_ctrl_c_sets_the_flag_a_second_one_raises_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with sigint_flag() as flag:
        assert not flag.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        assert flag.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_off_the_main_thread_no_handler_is_installed():
    seen = []

    def worker():
        with sigint_flag() as flag:
            seen.append((flag.is_set(), signal.getsignal(signal.SIGINT)))

    before = signal.getsignal(signal.SIGINT)
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [(False, before)]
