"""Issue 39's replay on the mini preset: a run steered from "a red circle on a blue background" to "a yellow circle on
a blue background" at step 15, its lr halved at step 25, paused and continued, gives the same final.png bit for bit
when its recorded job.yaml is run again (the pause leaves no mark)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import yaml
from PIL import Image

import vqclip

RED, YELLOW = "a red circle on a blue background", "a yellow circle on a blue background"


@pytest.mark.slow
def test_a_steered_mini_run_replays_bit_for_bit(tmp_path):
    pipe = vqclip.Pipeline.from_preset("mini", device="cpu")
    lr = pipe.config(RED).optimizer.lr
    steering = vqclip.Steering()

    def wheel(event) -> None:  # after step 14's update: the prompt; after step 24's: the lr halved, and a pause
        if event.step == 14:
            steering.steer(prompt=YELLOW)
        if event.step == 24:
            steering.steer(lr=lr / 2)
            steering.pause()
            threading.Thread(target=steering.resume).start()

    job = {"prompt": RED, "steps": 30, "seed": 1, "candidates": {"n": 1}, "output": {"progress": False,
                                                                                      "video": False}}
    live = pipe.run(job, tmp_path / "live", callbacks=[wheel], steer=steering)
    recorded = yaml.safe_load((live.dir / "job.yaml").read_text())
    assert [(e["at"], e["prompt"], e["lr"]) for e in recorded["steer"]] == [(15, YELLOW, None), (25, "", lr / 2)]
    recorded["output"]["dir"] = str(tmp_path / "replay")
    replay = pipe.run(recorded, tmp_path / "replay")
    with Image.open(live.final) as a, Image.open(replay.final) as b:
        assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
