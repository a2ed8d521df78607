"""Flow-stabilised restyles (vqclip/modes/stabilise.py, vqclip/terms/flow.py, the restyle's flow path): each frame's
start is (1 - flow_init) x the blended start + flow_init x the previous saved output warped by the input frames' flow,
outside occlusions (the blended start inside them); the flow term is flow_weight x the mean |image - warped output|
outside occlusions, from the second frame made; both checked against OpenCV's DIS flow computed here and an
independent warp; killed and resumed, a stabilised restyle ends with the uninterrupted run's frames and video; and the
cluster keeps a stabilised restyle on one worker."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vqclip.config import merge_layers
from vqclip.files.video import read_video_frames, write_mp4
from vqclip.modes import stabilise
from vqclip.modes.stabilise import Stabiliser, stabilised
from vqclip.nets.load import ModelCache
from vqclip.nets.vqgan import VQGAN
from vqclip.optim.flowwarp import occlusion, warp
from vqclip.runs import cluster as c
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.runs.resume import resume_run
from vqclip.terms.flow import FlowTerm, flow_loss

SEED, BLEND, SHARE, WEIGHT, FRAMES = 5, 0.2, 0.5, 1.0, 4
CACHE = ModelCache()  # the tiny models, loaded once for this file's runs


class Killed(Exception):
    """Stands for a SIGKILL during a frame."""


def textured_video(path: Path, n: int, shift: int = 2, side: int = 32, fps: int = 4) -> Path:
    """n frames of a smooth random texture moving `shift` pixels right per frame (known motion), silent."""
    g = np.random.default_rng(3)
    small = torch.from_numpy(g.random((1, 3, 12, 12), np.float32))
    big = F.interpolate(small, size=(side, side + shift * n), mode="bicubic", align_corners=False).clamp(0, 1)
    tex = (big[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    write_mp4([np.ascontiguousarray(tex[:, shift * (n - i): shift * (n - i) + side]) for i in range(n)], path, fps)
    return path


def png(path: Path) -> torch.Tensor:
    """An 8-bit PNG as [1,3,H,W] in [0,1], read with OpenCV (BGR to RGB)."""
    return torch.from_numpy(cv2.imread(str(path))[..., ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]


def dis(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """OpenCV's DIS flow (medium preset) a->b of two [1,3,H,W] frames, [1,2,H,W]: the reference."""
    grey = [cv2.cvtColor((t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
            for t in (a, b)]
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(grey[0], grey[1], None)
    return torch.from_numpy(flow).permute(2, 0, 1)[None]


def carried(image, before, prev):
    """The previous output prev warped into image's place by the flow image->before, and 1 where not occluded."""
    back, ahead = dis(image, before), dis(before, image)
    return warp(prev, back), 1 - occlusion(back, ahead)


def job(tiny_job, video: Path, out: Path, **restyle) -> dict:
    return {**tiny_job, "prompt": "a red circle", "seed": SEED, "cutouts": {"n": 2}, "init": {"weight": 0.5},
            "output": {"dir": str(out), "progress": False},
            "restyle": {"input": str(video), "steps_per_frame": 2, "blend": BLEND, "flow": "dis",
                        "flow_init": SHARE, "flow_weight": WEIGHT, **restyle}}


@pytest.fixture(scope="module")
def runs(tiny_job, tmp_path_factory):
    """A stabilised restyle of 4 frames with its encoder inputs and flow term values recorded; the same run killed
    during frame 2 and resumed."""
    tmp = tmp_path_factory.mktemp("stabilise")
    video = textured_video(tmp / "in.mp4", FRAMES)
    seen = {"encode": [], "term": [], "events": []}
    encode, term = VQGAN.encode, FlowTerm.__call__

    def spy_term(self, image, z, z_init, step):
        value = term(self, image, z, z_init, step)
        seen["term"].append((image.detach().clone(), None if value is None else value.detach().clone()))
        return value

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VQGAN, "encode", lambda self, x: seen["encode"].append(x.detach().clone()) or encode(self, x))
        mp.setattr(FlowTerm, "__call__", spy_term)
        whole = run_job(build_config(job(tiny_job, video, tmp / "whole")), cache=CACHE,
                        extra_callbacks=[lambda e: seen["events"].append((e.frame, sorted(e.loss_terms)))])

    def kill(event):
        if event.frame == 2 and event.step == 1:
            raise Killed

    with pytest.raises(Killed):
        run_job(build_config(job(tiny_job, video, tmp / "killed")), cache=CACHE, extra_callbacks=[kill])
    killed = sorted(p.name for p in (tmp / "killed" / "frames").glob("*.png"))
    resumed = resume_run(tmp / "killed", cache=CACHE)
    inputs, _ = read_video_frames(video)  # ffmpeg reading the input back: what the restyle was given
    frames = [torch.from_numpy(f.astype(np.float32) / 255).permute(2, 0, 1)[None] for f in inputs]
    return whole, seen, frames, killed, resumed


def test_each_stabilised_start_is_the_blend_then_the_warped_previous_output_outside_occlusions(runs):
    whole, seen, inputs, _, _ = runs
    assert len(seen["encode"]) == FRAMES and len(whole.frames) == FRAMES
    torch.testing.assert_close(seen["encode"][0], inputs[0], rtol=0, atol=1e-6)  # the first: no previous output
    kept = []
    for i in range(1, FRAMES):
        prev = png(whole.frames[i - 1])  # the saved 8-bit frame, as a resume sees it
        blended = (1 - BLEND) * inputs[i] + BLEND * prev
        warped, keep = carried(inputs[i], inputs[i - 1], prev)
        expected = torch.where(keep.bool(), (1 - SHARE) * blended + SHARE * warped, blended)
        torch.testing.assert_close(seen["encode"][i], expected, rtol=0, atol=1e-5)
        kept.append(keep.mean().item())
    assert all(0.5 < k < 1 for k in kept)  # the motion occludes a strip at the edge, not the picture


def test_the_flow_term_pulls_towards_the_warped_previous_output_from_the_second_frame(runs):
    whole, seen, inputs, _, _ = runs
    steps = 2
    assert [v is None for _, v in seen["term"]] == [True] * steps + [False] * (FRAMES - 1) * steps
    assert [keys for _, keys in seen["events"]].count(sorted(seen["events"][0][1])) == steps  # frame 0: no flow term
    assert all("flow" in keys for frame, keys in seen["events"] if frame > 0)
    assert all("flow" not in keys for frame, keys in seen["events"] if frame == 0)
    for k, (image, value) in enumerate(seen["term"][steps:]):
        i = 1 + k // steps
        warped, keep = carried(inputs[i], inputs[i - 1], png(whole.frames[i - 1]))
        inside = keep[0, 0].bool()
        expected = WEIGHT * (image[0] - warped[0]).abs()[:, inside].mean()
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)


def test_a_killed_stabilised_restyle_resumes_to_the_uninterrupted_video(runs):
    whole, _, _, killed, resumed = runs
    assert killed == ["000000.png", "000001.png"]  # killed during frame 2
    assert not resumed.interrupted and [p.name for p in resumed.frames] == [p.name for p in whole.frames]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(resumed.frames, whole.frames))
    assert resumed.video.name == "restyled.mp4" and resumed.video.read_bytes() == whole.video.read_bytes()
    assert torch.equal(png(resumed.final), png(whole.final))  # its pixels (its text chunks record the run)


def test_a_killed_stabilised_restyle_on_mini_resumes_to_the_uninterrupted_video(tmp_path):
    """The same on the embedded mini preset (its own VQGAN and CLIP, its defaults), killed after frame 2."""
    video = textured_video(tmp_path / "in.mp4", FRAMES)
    mini = {"model": "mini", "size": [32, 32]}

    def run(name, **kwargs):
        return run_job(build_config(job(mini, video, tmp_path / name, steps_per_frame=1)), cache=CACHE, **kwargs)

    def kill(event):
        if event.frame == 3:
            raise Killed

    whole = run("whole")
    with pytest.raises(Killed):
        run("killed", extra_callbacks=[kill])
    assert len(list((tmp_path / "killed" / "frames").glob("*.png"))) == 3
    resumed = resume_run(tmp_path / "killed", cache=CACHE)
    assert [p.name for p in resumed.frames] == [p.name for p in whole.frames] and len(whole.frames) == FRAMES
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(resumed.frames, whole.frames))
    assert resumed.video.read_bytes() == whole.video.read_bytes()


def test_flow_loss_is_the_mean_absolute_difference_over_kept_pixels():
    g = torch.Generator().manual_seed(1)
    image, target = torch.rand(2, 3, 5, 7, generator=g), torch.rand(1, 3, 5, 7, generator=g)
    keep = (torch.rand(1, 1, 5, 7, generator=g) > 0.4).float()
    inside = keep[0, 0].numpy().astype(bool)
    diffs = [abs(float(image[b, ch, y, x] - target[0, ch, y, x])) for b in range(2) for ch in range(3)
             for y in range(5) for x in range(7) if inside[y, x]]
    assert flow_loss(image, target, keep).item() == pytest.approx(sum(diffs) / len(diffs), rel=1e-6)
    assert flow_loss(image, target, torch.zeros_like(keep)).item() == 0  # all occluded: no pull, no NaN


def term_job(tiny_job, flow="dis", weight=WEIGHT):
    cfg = merge_layers([("t", {**tiny_job, "prompt": "a cat", "restyle": {"input": "in.mp4"}})])
    return replace(cfg, restyle=replace(cfg.restyle, flow=flow, flow_weight=weight))  # unchecked: the term alone


def test_the_flow_term_is_built_only_with_a_method_and_a_weight_and_pulls_only_when_aimed(tiny_job):
    assert FlowTerm.wanted(term_job(tiny_job), None)
    assert not FlowTerm.wanted(term_job(tiny_job, weight=0.0), None)
    assert not FlowTerm.wanted(term_job(tiny_job, flow="none"), None)
    term = FlowTerm(term_job(tiny_job, weight=2.5), None, torch.device("cpu"))
    image = torch.rand(1, 3, 4, 4)
    assert term(image, None, None, 0) is None
    target, keep = torch.rand(1, 3, 4, 4), torch.ones(1, 1, 4, 4)
    term.aim(target, keep)
    assert term(image, None, None, 0).item() == pytest.approx(2.5 * (image - target).abs().mean().item())
    term.aim(None, None)
    assert term(image, None, None, 0) is None


class ShiftFlow:
    """A stand-in flow model: a constant shift (dx, dy) from the frame `image` to the one before, minus it back."""

    def __init__(self, image, shift):
        self.image, self.shift = image, shift

    def __call__(self, a, b):
        d = self.shift if a is self.image else (-self.shift[0], -self.shift[1])
        return torch.tensor(d, dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, *a.shape[-2:]).clone()


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_the_start_takes_the_shifted_previous_output_where_it_is_seen(monkeypatch, share):
    g = torch.Generator().manual_seed(2)
    image, before, prev, start = (torch.rand(1, 3, 6, 9, generator=g) for _ in range(4))
    dx, dy = 2, -1
    term = FlowTerm.__new__(FlowTerm)
    term.name, term.device, term.target, term.keep = "flow", torch.device("cpu"), None, None
    r = type("R", (), {"flow": "dis", "flow_init": share})()
    stable = Stabiliser(r, ShiftFlow(image, (dx, dy)), type("O", (), {"terms": [term]})())
    got = stable.start(start, image, before, prev)
    expected, keep = start.clone(), torch.zeros(1, 1, 6, 9)
    for y in range(6):
        for x in range(9):
            if 0 <= x + dx < 9 and 0 <= y + dy < 6:  # prev(p + shift) lies in the picture: not occluded
                expected[..., y, x] = (1 - share) * start[..., y, x] + share * prev[..., y + dy, x + dx]
                keep[..., y, x] = 1
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert torch.equal(term.keep, keep) and keep.sum() == 5 * 7  # row 0 and the last two columns come from outside
    torch.testing.assert_close(term.target[..., 1:, :7], prev[..., :-1, 2:], rtol=0, atol=1e-6)
    assert torch.equal(stable.start(start, image, None, None), start) and term.target is None  # the first frame


def test_stabilised_needs_a_method_and_a_share_or_a_weight():
    R = lambda flow, init, weight: type("R", (), {"flow": flow, "flow_init": init, "flow_weight": weight})()  # noqa
    assert stabilised(R("dis", 0.1, 0)) and stabilised(R("raft-small", 0, 0.1))
    assert not stabilised(R("dis", 0, 0)) and not stabilised(R("none", 0.5, 1))


def test_the_cluster_keeps_a_stabilised_restyle_on_one_worker_with_a_notice(tiny_job, tmp_path, monkeypatch,
                                                                            caplog):
    monkeypatch.setattr("vqclip.modes.rules.count_frames", lambda path: 6)
    cfg = merge_layers([("t", {**tiny_job, "prompt": "a cat", "output": {"dir": str(tmp_path / "run")},
                               "restyle": {"input": "in.mp4", "blend": 0.0, "flow": "dis", "flow_init": 0.5}})])
    plain = replace(cfg, restyle=replace(cfg.restyle, flow="none", flow_init=0.0), output=replace(
        cfg.output, dir=str(tmp_path / "plain")))
    with caplog.at_level(logging.INFO, logger="vqclip"):
        jobs, _ = c.plan_jobs([cfg, plain])
    notices = [r.getMessage() for r in caplog.records if "one worker" in r.getMessage()]
    assert len(notices) == 1 and "restyle.flow dis" in notices[0] and "\n" not in notices[0]
    out = c._spread_frames(jobs, 3)
    assert out[0] is jobs[0] and not jobs[0].chunks  # the stabilised one: whole, in order
    assert len(jobs[1].chunks) == 3 and out[1:] == jobs[1].chunks  # blend 0 without flow: spread as before
