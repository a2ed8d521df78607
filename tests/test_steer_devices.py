"""Steering and several devices (vqclip/runs/pipeline.py, vqclip/runs/devices.py): a live Steering of a run across
devices is one line (the other processes could not take its changes), while a job's `steer:` entries, which every
process reads, replay across `cpu,cpu` as on one device scoring the cutouts half at a time, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from vqclip.api import Pipeline
from vqclip.errors import VqclipError
from vqclip.optim.steer import Steering
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job

from test_batch import pixels


def job(tiny_job, out, devices, **over) -> dict:
    return {**tiny_job, "prompt": "a red circle", "seed": 1, "steps": 3, "threads": 1, "devices": devices,
            "output": {"dir": str(out), "video": False, "progress": False}, **over}


def test_a_live_steer_of_a_run_across_devices_is_one_line_and_makes_no_folder(tiny_job, tmp_path):
    steering = Steering()
    with pytest.raises(VqclipError, match=r"^steer: a run across devices cannot be steered live .*--device") as err:
        run_job(build_config(job(tiny_job, tmp_path / "two", ["cpu", "cpu"])), steering=steering)
    assert "\n" not in str(err.value) and not (tmp_path / "two").exists()
    with pytest.raises(VqclipError, match="across devices"):  # the Python API's way in, and its steering ended
        Pipeline([]).run(job(tiny_job, tmp_path / "api", ["cpu", "cpu"]), steer=steering)
    assert steering.finished


def test_a_steered_run_on_a_named_device_is_steered(tiny_job, tmp_path):
    steering = Steering()
    run = Pipeline([], device="cpu").run(job(tiny_job, tmp_path / "one", [], device="cpu"), steer=steering,
                                     callbacks=[lambda e: steering.steer(lr=0.05) if e.step == 0 else None])
    assert steering.entries == [{"at": 1, "lr": 0.05}] and run.config.steer[0].lr == 0.05


@pytest.mark.slow
def test_steer_entries_replay_across_two_devices_as_on_one(steered_edit_on_two_devices):
    """The prompt steered at step 1, the lr and a negative at 2, on two gloo processes and on one scoring the cutouts
    half at a time (the run, a masked edit with regions, is shared with tests/test_draw_devices.py: conftest.py)."""
    two, one = steered_edit_on_two_devices.two, steered_edit_on_two_devices.halves
    assert [(e.at, e.prompt, e.lr) for e in two.config.steer] == [(1, "a yellow circle", None), (2, "", 0.05)]
    assert two.result.losses == one.result.losses and np.array_equal(pixels(two.final), pixels(one.final))
