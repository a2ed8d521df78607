"""What every mode answers the pipeline by default (vqclip.modes.base, the still mode): steps, frame cadence, the
video's frame rate, no audio, the job unchanged; and the learning rate a run's context gives each step."""

import pytest
import torch
from dataclasses import replace

from vqclip.config import merge_layers
from vqclip.modes.base import Mode, RunContext
from vqclip.modes.still import Still
from vqclip.modes.zoom import Zoom


def job(**layer):
    return merge_layers([("t", {"prompt": "a cat", "steps": 40, **layer})])


@pytest.mark.parametrize("mode", [Mode(), Still(), Zoom()])
def test_a_runs_steps_frames_and_video(mode):
    cfg = job(output={"save_every": 5, "fps": 12})
    assert mode.total(cfg) == 40 and mode.steps_done(cfg, []) == 0 and mode.audio(cfg) is None
    assert mode.prepare(cfg, None) is cfg
    assert mode.frame_every(cfg) == (cfg.animation.every if mode.name == "zoom" else 5)
    assert mode.fps(cfg, 10) == 12.0  # output.fps, unless video_length is set
    timed = replace(cfg, output=replace(cfg.output, video_length=2.0))
    assert mode.fps(timed, 10) == 5.0 and mode.fps(timed, 1) == 0.5
    assert mode.fps(timed, 0) == pytest.approx(1e-3)  # never zero: ffmpeg needs a rate
    assert mode.saves_state and mode.final_frame and mode.video_name == "progress"


@pytest.mark.parametrize("schedule, at_20, at_40", [("constant", 0.2, 0.2), ("linear", 0.11, 0.02),
                                                    ("cosine", 0.11, 0.02)])
def test_the_contexts_learning_rate_runs_over_the_jobs_steps_or_the_steps_given(schedule, at_20, at_40):
    cfg = job(optimizer={"lr": 0.2, "schedule": schedule, "min_factor": 0.1})
    ctx = RunContext(cfg, None, torch.device("cpu"), 0)
    assert ctx.lr_at(0) == pytest.approx(0.2)
    assert ctx.lr_at(20) == pytest.approx(at_20) and ctx.lr_at(40) == pytest.approx(at_40)
    assert ctx.lr_at(2, steps=4) == pytest.approx(at_20) and ctx.lr_at(4, steps=4) == pytest.approx(at_40)
