"""Steering through the Python API: `Pipeline.stream(...)`'s steer/pause/resume from the iterating thread, and
`Pipeline.run(..., steer=Steering())` driven from a callback; each run's recorded job replays it exactly, through the
API and through `vqclip run`."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import yaml
from PIL import Image

import vqclip
from vqclip.cli import main
from vqclip.errors import VqclipError

from test_api import pipe, pixels  # noqa: F401  (the tiny-model Pipeline fixture and the pixel reader)

RED, YELLOW = "a red circle on a blue background", "a yellow circle on a blue background"


def test_a_stream_steered_from_its_reader_replays_exactly(pipe):
    paused = threading.Event()

    def gate(event) -> None:  # holds step 2's end until the reader has paused the run
        if event.step == 2:
            assert paused.wait(30)

    stream = pipe.stream(RED, steps=8, seed=4, size=32, cutouts={"n": 2}, callbacks=[gate])
    for event in stream:
        if event.step == 2:
            stream.pause()
            paused.set()
            stream.steer(prompt=YELLOW)
            stream.steer(lr=0.05)
            stream.resume()
    steer = [{k: v for k, v in dataclasses.asdict(e).items() if v not in (None, "")}
             for e in stream.result.config.steer]
    assert steer == [{"at": 3, "prompt": YELLOW}, {"at": 3, "lr": 0.05}]
    with pytest.raises(VqclipError, match="finished"):
        stream.steer(lr=0.1)
    again = pipe(RED, steps=8, seed=4, size=32, cutouts={"n": 2}, steer=steer)
    assert np.array_equal(pixels(again.images[0]), pixels(stream.result.images[0]))
    plain = pipe(RED, steps=8, seed=4, size=32, cutouts={"n": 2})
    assert not np.array_equal(pixels(plain.images[0]), pixels(stream.result.images[0]))


def test_pipeline_run_records_the_steers_and_vqclip_run_replays_them(pipe, tiny_job, tmp_path):
    steering = vqclip.Steering()

    def wheel(event) -> None:
        if event.step == 1:
            steering.steer(prompt=YELLOW)

    job = {"prompt": RED, "steps": 5, "seed": 2, "size": [32, 32], "cutouts": {"n": 2},
           "output": {"progress": False, "video": False}}
    run = pipe.run(job, tmp_path / "live", callbacks=[wheel], steer=steering)
    recorded = yaml.safe_load((run.dir / "job.yaml").read_text())
    assert [(e["at"], e["prompt"]) for e in recorded["steer"]] == [(2, YELLOW)]
    recorded["output"]["dir"] = str(tmp_path / "replay")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(recorded))
    assert main(["run", str(tmp_path / "job.yaml"), "--quiet"]) == 0
    assert np.array_equal(pixels(tmp_path / "replay" / "final.png"), pixels(run.final))
    skipped = vqclip.Steering()  # the replay's folder holds its finished run: skipped, so its steering is finished
    pipe.run(recorded, tmp_path / "replay", steer=skipped)
    with pytest.raises(VqclipError, match="finished"):
        skipped.steer(lr=0.01)


def test_one_steering_steers_one_run(pipe, tmp_path):
    with pytest.raises(VqclipError, match="one image"):
        pipe.run({"prompt": RED, "steps": 2, "n": 2, "size": [32, 32]}, tmp_path / "b", steer=vqclip.Steering())
