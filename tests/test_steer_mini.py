"""Issue 39's replay on the mini preset: a run steered from "a red circle on a blue background" to "a yellow circle on
a blue background" at step 6, its lr halved at step 13, paused and continued, gives the same final.png bit for bit
when its recorded job.yaml is run again (the pause leaves no mark); and the same run in another process, SIGKILLed
after its last steer (state.pt of step 10: the steer at 13 is its future), ends as the uninterrupted run under
`vqclip resume`. Run as a script (`python tests/test_steer_mini.py OUT`), this file makes the steered run into OUT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import vqclip
from vqclip.cli import main
from vqclip.runs.statefile import load_state

RED, YELLOW = "a red circle on a blue background", "a yellow circle on a blue background"
STEPS, STATE_EVERY = 20, 10
KILL_AFTER = 15  # the frame whose file tells the watcher to SIGKILL: after both steers, before the run ends


def steered_run(pipe, out: Path):
    """The steered mini run into `out` (the same in the test's process and in the one it kills)."""
    lr = pipe.config(RED).optimizer.lr
    steering = vqclip.Steering()

    def wheel(event) -> None:  # after step 5's update: the prompt; after step 12's: the lr halved, and a pause
        if event.step == 5:
            steering.steer(prompt=YELLOW)
        if event.step == 12:
            steering.steer(lr=lr / 2)
            steering.pause()
            threading.Thread(target=steering.resume).start()

    job = {"prompt": RED, "steps": STEPS, "seed": 1, "candidates": {"n": 1}, "state_every": STATE_EVERY,
           "threads": 1, "output": {"progress": False, "video": False}}
    return pipe.run(job, out, callbacks=[wheel], steer=steering), lr


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def kill_at_frame(process: subprocess.Popen, frame: Path, done: threading.Event) -> None:
    """SIGKILL `process` as soon as `frame` exists (polled every 10 ms); `done` is set once it is dead."""
    while process.poll() is None and not frame.exists():
        time.sleep(0.01)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done.set()


@pytest.mark.slow
def test_a_steered_mini_run_replays_bit_for_bit_and_resumes_after_a_sigkill(tmp_path):
    killed = tmp_path / "killed"  # the same run in a process of its own, started first: it runs beside this one
    script = [sys.executable, str(Path(__file__).resolve()), str(killed)]
    log = (tmp_path / "killed.log").open("wb")  # a file, not a pipe: a full pipe would hold the run up
    process = subprocess.Popen(script, cwd=Path(__file__).resolve().parents[1], stdout=log, stderr=log)
    dead = threading.Event()
    watcher = threading.Thread(target=kill_at_frame, args=(process, killed / "frames" / f"{KILL_AFTER:06d}.png", dead),
                               daemon=True)
    watcher.start()
    try:
        pipe = vqclip.Pipeline.from_preset("mini", device="cpu")
        live, lr = steered_run(pipe, tmp_path / "live")
        recorded = yaml.safe_load((live.dir / "job.yaml").read_text())
        assert [(e["at"], e["prompt"], e["lr"]) for e in recorded["steer"]] == [(6, YELLOW, None), (13, "", lr / 2)]
        recorded["output"]["dir"] = str(tmp_path / "replay")
        replay = pipe.run(recorded, tmp_path / "replay")
        assert np.array_equal(pixels(live.final), pixels(replay.final))

        assert dead.wait(300), "the steered run in its own process did not reach the kill"
        assert process.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
        assert not (killed / "final.png").exists()
        state = load_state(killed / "state.pt")
        assert 13 > state["step"] >= 6  # saved after the first steer, before the second
        theirs = yaml.safe_load((killed / "job.yaml").read_text())  # rewritten by the live steers: it replays the run
        assert {**theirs, "output": None} == {**yaml.safe_load((live.dir / "job.yaml").read_text()), "output": None}
        assert main(["resume", str(killed), "--quiet"]) == 0
        assert np.array_equal(pixels(killed / "final.png"), pixels(live.final))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


if __name__ == "__main__":  # the run the test SIGKILLs
    steered_run(vqclip.Pipeline.from_preset("mini", device="cpu"), Path(sys.argv[1]))
