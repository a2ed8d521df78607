"""3D zoom runs (modes/zoom.py + zoom3d.py) with a stand-in depth model (until the depth model merges): the depth
model loads once per run and only when a 3D value is set, runs once per 3D move; a 3D zoom killed and resumed ends
with the uninterrupted run's frames, byte for byte, and a cluster worker makes the same frames; a flat depth makes the
3D flight the 2D zoom of near/(near - t); on mini, each frame is the 3D move of the one before; a depth model that is
not on disk fails in one line before any run folder is made."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from test_resume_modes import Killed, assert_same_run, frames, kill_at
from test_zoom import corr, smooth_image
from vqclip.cli import main
from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.files.images import save_png
from vqclip.modes import zoom as zoom_mode
from vqclip.modes.zoom import Motion, transform_image
from vqclip.nets.load import ModelCache
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import generate, run_job
from vqclip.runs.resume import resume_run

CACHE = ModelCache()


class StubDepth:
    """A stand-in depth model: disparity from the image's brightness plus a left-to-right ramp (deterministic), with
    the calls it gets counted; `loads` counts `load_depth_model` calls."""

    def __init__(self, flat: bool = False):
        self.flat, self.calls, self.loads = flat, [], []

    def load(self, name, device):
        self.loads.append((name, str(device)))
        return self

    def __call__(self, image, size):
        self.calls.append((tuple(image.shape), size, torch.is_grad_enabled()))
        if self.flat:
            return torch.ones_like(image[:, :1])
        ramp = torch.linspace(0, 1, image.shape[-1], device=image.device).expand_as(image[:, :1])
        return image.mean(1, keepdim=True) + ramp


def job(tiny_job, out: Path, **animation) -> dict:
    """8 steps, moves after steps 0, 3 and 6, state.pt every 2, outpainted borders (their noise is run state)."""
    return {**tiny_job, "prompt": "a red cat", "steps": 8, "seed": 11, "state_every": 2, "init": {"weight": 0.5},
            "optimizer": {"name": "adam", "lr": 0.2},
            "output": {"dir": str(out), "progress": False, "save_every": 1, "video": False},
            "animation": {"mode": "zoom", "every": 3, "translation_z": -12, "rotation_3d_y": 3, "zoom": 1.02,
                          "padding": "outpaint", "near": 100, "far": 1000, "depth_size": 28, **animation}}


@pytest.fixture(scope="module")
def runs(tiny_job, tmp_path_factory):
    """The uninterrupted 3D zoom, the same run killed at step 6 (after its frame, before its state) and resumed, and
    the stand-in depth of each."""
    root = tmp_path_factory.mktemp("zoom3d")
    depths = {}
    with pytest.MonkeyPatch.context() as mp:
        for name in ("whole", "killed", "resumed"):
            depth = depths[name] = StubDepth()
            mp.setattr(zoom_mode, "load_depth_model", depth.load)
            if name == "whole":
                whole = run_job(build_config(job(tiny_job, root / "whole")), cache=CACHE)
            elif name == "killed":
                with pytest.raises(Killed):
                    run_job(build_config(job(tiny_job, root / "killed")), cache=CACHE, extra_callbacks=[kill_at(6)])
            else:
                resumed = resume_run(root / "killed", cache=CACHE)
    return whole, resumed, depths


def test_the_depth_model_loads_once_and_runs_once_per_3d_move_outside_autograd(runs):
    _, _, depths = runs
    whole = depths["whole"]
    assert whole.loads == [("depth-anything-v2-small", "cpu")]
    assert whole.calls == [((1, 3, 32, 32), 28, False)] * 3  # moves after steps 0, 3 and 6
    assert len(depths["killed"].calls) == 2 and len(depths["killed"].loads) == 1  # killed before the move at 6
    assert len(depths["resumed"].loads) == 1 and len(depths["resumed"].calls) == 1  # from state.pt at 4: the move at 6


def test_a_killed_3d_zoom_resumes_to_the_uninterrupted_video(runs):
    whole, resumed, _ = runs
    assert len(frames(whole.dir)) == 4  # one per move (steps 0, 3, 6) and the last
    assert_same_run(resumed, whole)


def test_a_cluster_worker_makes_the_3d_zooms_frames(runs, tiny_job, tmp_path, monkeypatch):
    """The Ray runner's worker (run in-process: the part of `--ray` that runs a job) runs a 3D zoom as one job,
    loading its depth model itself, and sends back the local run's frames, byte for byte."""
    from dataclasses import replace

    from vqclip.runs.clusterwork import Task, Worker

    whole, _, _ = runs
    depth = StubDepth()
    monkeypatch.setattr(zoom_mode, "load_depth_model", depth.load)
    cfg = build_config(job(tiny_job, tmp_path / "unused"))
    back = Worker(1).run(Task("z3d", replace(cfg, output=replace(cfg.output, dir=None)), "dest", "dest"))
    assert len(depth.loads) == 1 and len(depth.calls) == 3
    made = sorted(k for k in back["files"] if k.startswith("frames/"))
    assert made == [f"frames/{p.name}" for p in sorted((whole.dir / "frames").glob("*.png"))]
    for name in made:
        assert back["files"][name] == (whole.dir / name).read_bytes()


def test_a_3d_zoom_runs_on_one_device_only(tiny_job, tmp_path):
    from vqclip.runs.devices import check_devices

    cfg = build_config(job(tiny_job, tmp_path, padding="zeros"))
    with pytest.raises(VqclipError, match="^devices: a zoom video runs on one device"):
        check_devices(build_config({**job(tiny_job, tmp_path), "devices": ["cpu", "cpu"]}))
    check_devices(cfg)


def test_a_2d_zoom_loads_no_depth_model(tiny_job, tiny_models, monkeypatch):
    depth = StubDepth()
    monkeypatch.setattr(zoom_mode, "load_depth_model", depth.load)
    cfg = merge_layers([("t", {**job(tiny_job, Path("unused"), translation_z=0, rotation_3d_y="0:0, 5:0"),
                               "steps": 4})])
    generate(cfg, tiny_models)
    assert depth.loads == [] and depth.calls == []


def test_only_a_move_with_a_3d_value_estimates_depth():
    """translation_z key-framed 0 until step 4: the moves before are the 2D ones, with no depth pass."""
    animation = {"mode": "zoom", "zoom": 1.1, "translation_z": "0:0, 4:0, 6:9", "padding": "zeros"}
    cfg = merge_layers([("t", {"prompt": "x", "animation": animation})])
    motion, depth = Motion.from_config(cfg.animation), StubDepth()
    image = smooth_image(32, 32)
    for step in (0, 4):
        assert torch.equal(motion.apply(image, step, depth=depth), transform_image(image, zoom=1.1, padding="zeros"))
    assert depth.calls == []
    motion.apply(image, 6, depth=depth)
    assert len(depth.calls) == 1


def test_a_flat_depth_flight_is_the_2d_zoom_of_near_over_near_minus_t(tiny_job, tiny_models, monkeypatch):
    """The whole run, wired: a flat disparity puts the picture at near = 100, so translation_z 10 each move is the
    2D zoom 100/90 (within float error, which the optimisation steps after each move carry along)."""
    monkeypatch.setattr(zoom_mode, "load_depth_model", StubDepth(flat=True).load)
    three = merge_layers([("t", {**job(tiny_job, Path("unused"), translation_z=10, rotation_3d_y=0, zoom=1.0,
                                       padding="zeros"), "steps": 5})])
    two = merge_layers([("t", {**job(tiny_job, Path("unused"), translation_z=0, rotation_3d_y=0, zoom=100 / 90,
                                     padding="zeros"), "steps": 5})])
    a, b = generate(three, tiny_models), generate(two, tiny_models)
    assert (a.image - b.image).abs().max() < 1e-4  # measured 0: the VQ encode after each move absorbs float error
    off = merge_layers([("t", {**job(tiny_job, Path("unused"), translation_z=10, rotation_3d_y=0, zoom=1.0,
                                     padding="zeros", near=200), "steps": 5})])
    assert (generate(off, tiny_models).image - b.image).abs().max() > 1e-2  # near is what the flight is scaled by


def test_a_depth_model_not_on_disk_fails_in_one_line_before_the_run_folder(tiny_args, tmp_path, capsys, monkeypatch):
    def offline(name, device):
        raise VqclipError(f"depth model {name!r} is not on disk and the network is off; fetch it with "
                          f"`vqclip models download {name}`")

    monkeypatch.setattr(zoom_mode, "load_depth_model", offline)
    assert main(["zoom", "x", *tiny_args, "--translation-z", "5", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vqclip models download depth-anything-v2-small" in err[0], err
    assert not (tmp_path / "r").exists()
    assert main(["zoom", "x", *tiny_args, "--frames", "2", "--every", "1", "--out", str(tmp_path / "2d")]) == 0


def test_frames_fly_in_3d_with_the_trained_mini_model(tiny_job, tmp_path, monkeypatch):
    """With mini's VQGAN (round trip close to the identity), frame k+1 is the 3D move of frame k over its (stand-in)
    depth: it matches that better than the unmoved frame k."""
    from test_zoom import zoom_frames, zoom_job
    from vqclip.models.resolve import resolve_preset
    from vqclip.nets.load import load_models

    try:
        mini = resolve_preset("mini", download=False)
    except VqclipError:
        pytest.skip("the embedded mini model is not built yet")
    depth = StubDepth()
    monkeypatch.setattr(zoom_mode, "load_depth_model", depth.load)
    save_png(smooth_image(), tmp_path / "init.png")
    models = {"vqgan": {"config": str(mini.vqgan_config), "checkpoint": str(mini.vqgan_checkpoint)},
              "clip": [{"model": mini.clip_model, "pretrained": mini.clip_pretrained}]}
    cfg = zoom_job({**tiny_job, **models}, tmp_path / "init.png", size=[48, 48], steps=6, animation={
        "mode": "zoom", "every": 2, "translation_z": 25, "rotation_3d_x": 4, "near": 100, "far": 400,
        "depth_size": 14})
    frames, _ = zoom_frames(cfg, load_models(cfg, torch.device("cpu")))
    assert len(depth.calls) == 3
    motion = Motion.from_config(cfg.animation)
    for k in range(len(frames) - 1):
        moved = motion.apply(frames[k], k * cfg.animation.every, depth=depth)
        # measured 0.93-0.97 against 0.77-0.80 for the unmoved frame: the 3D move leaves at most half the unexplained
        # variance the unmoved frame does (measured 0.28 at worst)
        assert corr(frames[k + 1], moved, 6) > 0.88
        assert 1 - corr(frames[k + 1], moved, 6) < 0.5 * (1 - corr(frames[k + 1], frames[k], 6))


def test_the_camera_holds_the_jobs_3d_settings_and_none_without_a_3d_value():
    cfg = merge_layers([("t", {"prompt": "x", "animation": {
        "mode": "zoom", "translation_z": "0:1, 10:3", "rotation_3d_x": 2, "rotation_3d_y": -1, "rotation_3d_z": 0.5,
        "fov": 70, "near": 3, "far": 30, "depth_size": 42}})])
    camera = Motion.from_config(cfg.animation).camera
    assert (camera.fov, camera.near, camera.far, camera.depth_size) == (70, 3, 30, 42)
    assert camera.at(5) == pytest.approx((2.0, 2.0, -1.0, 0.5))
    flat = merge_layers([("t", {"prompt": "x", "animation": {"mode": "zoom", "translation_z": "0:0, 9:0"}})])
    assert Motion.from_config(flat.animation).camera is None
