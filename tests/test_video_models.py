"""Issue 38's pieces end to end, with no stand-ins: a 3D zoom through the command line with a depth model read from a
checkpoint in the published Depth-Anything-V2-Small layout; in-between frames made with OpenCV's flow; and a depth or
flow model that is not on disk and cannot be fetched, refused in one line before any run folder is made."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from test_depth import _random_state
from test_stabilise import textured_video
from vqclip.cli import main
from vqclip.files.video import read_video_frames
from vqclip.models import auxmodels
from vqclip.models.download import DownloadError, MissingFile

@pytest.fixture(scope="module")
def depth_weights(tmp_path_factory) -> Path:
    """Random tensors in the published key layout (tests/test_depth.py's), saved with torch.save as the real file is."""
    path = tmp_path_factory.mktemp("depth") / "depth_anything_v2_vits.pth"
    torch.save(_random_state(), path)
    return path


@pytest.fixture
def unreachable(tmp_path, monkeypatch):
    """An empty model home whose every download fails as offline does."""
    def offline(spec, *args, **kwargs):
        raise DownloadError([MissingFile(spec.filename, tuple(spec.urls), Path(args[0]) / spec.filename,
                                         (f"{spec.urls[0]}: network is unreachable",))])

    monkeypatch.setenv("VQCLIP_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(auxmodels, "fetch", offline)


def test_a_3d_zoom_runs_with_the_published_depth_layout_and_in_betweens_from_opencv_flow(tiny_args, depth_weights,
                                                                                         tmp_path):
    out = tmp_path / "fly"
    assert main(["zoom", "x", *tiny_args, "--frames", "3", "--every", "1", "--translation-z", "20", "--rotation-3d-y",
                 "3", "--set", f"animation.depth={depth_weights}", "--set", "animation.depth_size=28",
                 "--interpolate", "2", "--out", str(out)]) == 0
    frames = sorted((out / "frames").glob("*.png"))
    video = next(out.glob("*.mp4"))
    shown, fps = read_video_frames(video)
    assert len(shown) == (len(frames) - 1) * 3 + 1 and fps == pytest.approx(30 * 3)


def test_a_depth_model_that_cannot_be_fetched_fails_in_one_line_before_the_run_folder(tiny_args, tmp_path, capsys,
                                                                                      unreachable):
    assert main(["zoom", "x", *tiny_args, "--translation-z", "5", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vqclip models download depth-anything-v2-small" in err[0], err
    assert not (tmp_path / "r").exists()


def test_raft_weights_that_cannot_be_fetched_fail_in_one_line_before_the_run_folder(tiny_args, tmp_path, capsys,
                                                                                    unreachable):
    clip = textured_video(tmp_path / "in.mp4", 3)
    assert main(["restyle", str(clip), "x", *tiny_args, "--flow", "raft-small", "--flow-init", "0.5",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vqclip models download raft-small" in err[0], err
    assert not (tmp_path / "r").exists()


def test_a_killed_3d_zoom_on_mini_with_the_real_depth_model_resumes_to_the_uninterrupted_video(depth_weights,
                                                                                               tmp_path):
    """mini's VQGAN and CLIP, the depth model read from the published layout, in-betweens from OpenCV's flow: killed
    after a move (before its state.pt), resumed, the frames and the video equal the uninterrupted run's."""
    from test_resume_modes import Killed, assert_same_run, kill_at
    from vqclip.nets.load import ModelCache
    from vqclip.runs.jobs import build_config
    from vqclip.runs.pipeline import run_job
    from vqclip.runs.resume import resume_run

    cache = ModelCache()

    def job(out: Path) -> dict:
        return {"model": "mini", "prompt": "a red circle on a blue background", "size": [48, 48], "steps": 6,
                "seed": 3, "state_every": 2, "cutouts": {"n": 4},
                "output": {"dir": str(out), "progress": False, "interpolate": 1},
                "animation": {"mode": "zoom", "every": 2, "translation_z": 30, "rotation_3d_x": 2, "near": 100,
                              "far": 400, "depth": str(depth_weights), "depth_size": 28}}

    whole = run_job(build_config(job(tmp_path / "whole")), cache=cache)
    with pytest.raises(Killed):
        run_job(build_config(job(tmp_path / "killed")), cache=cache, extra_callbacks=[kill_at(5)])
    resumed = resume_run(tmp_path / "killed", cache=cache)
    assert_same_run(resumed, whole)
    (a, fps_a), (b, fps_b) = (read_video_frames(next(r.dir.glob("*.mp4"))) for r in (whole, resumed))
    assert len(a) == 2 * len(whole.frames) - 1 and fps_a == fps_b and all((x == y).all() for x, y in zip(a, b))
