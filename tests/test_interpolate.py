"""In-between frames (output.interpolate, vqclip/optim/interpolate.py): the flow method against a known translation
and its exact flow, the cross-fade against its rule, ffmpeg's minterpolate read back, the video's frame count and
fps, the checks at their boundaries, and a killed zoom with in-betweens resumed to the same video."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import vqclip.optim.interpolate as interpolate
from vqclip.cli import main
from vqclip.config import check, check_inputs, merge_layers
from vqclip.errors import VqclipError
from vqclip.files.video import count_frames, read_video_frames, write_frames, write_mp4, write_video
from vqclip.nets.load import ModelCache
from vqclip.optim.interpolate import blend, flow_between, gap_frames, inbetweens
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.runs.resume import resume_run

CACHE = ModelCache()  # the tiny models, loaded once for this file's runs


class Killed(Exception):
    """Stands for a SIGKILL after a step's frame is written, before its state is saved."""


def kill_at(step: int):
    def callback(event):
        if event.step == step and event.frame is None:
            raise Killed
    return callback


def texture(h: int, w: int, seed: int = 0, cell: int = 4) -> np.ndarray:
    """A smooth random texture, uint8 [h,w,3], of features about `cell` pixels wide (wide: the codec keeps it)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, h // cell + 1, w // cell + 1, generator=g)
    big = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=True).clamp(0, 1)
    return (big[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def shift_flow(dx: float, dy: float, h: int, w: int) -> torch.Tensor:
    return torch.tensor([dx, dy], dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, h, w).clone()


def known_flow(a: np.ndarray, dx: float, dy: float):
    """The exact flow of frames related by a shift of (dx, dy): +shift from `a`, -shift from the other frame."""
    first = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    h, w = a.shape[:2]

    def flow(x, y):
        sign = 1 if torch.equal(x, first) else -1
        return shift_flow(sign * dx, sign * dy, h, w)
    return flow


def test_the_middle_in_between_of_a_4px_shift_is_the_2px_shift_edges_included():
    """b is a shifted 4 px right; the middle frame is a shifted 2 px, exactly (whole pixels: bilinear reads pixel
    centres), at the edges too: there the end that shows a pixel's content is taken alone (the occlusion check)."""
    big = texture(24, 40)
    a, b, mid = big[:, 4:36], big[:, 0:32], big[:, 2:34]  # b(x) = a(x - 4), mid(x) = a(x - 2)
    out = gap_frames(a, b, 1, "flow", known_flow(a, 4, 0))
    assert len(out) == 1 and np.array_equal(out[0], mid)
    quarter = gap_frames(a, b, 3, "flow", known_flow(a, 4, 0))  # t = 1/4, 1/2, 3/4: 1, 2 and 3 px
    for k, frame in enumerate(quarter, 1):
        assert np.array_equal(frame, big[:, 4 - k:36 - k]), k


def test_a_vertical_half_pixel_in_between_is_the_bilinear_mean_of_its_neighbours():
    """b is a shifted 3 px down; the middle frame at 1.5 px reads halfway between two rows (inside the frame)."""
    big = texture(40, 24, seed=1).astype(np.float64) / 255
    a, b = big[4:36], big[1:33]  # b(y) = a(y - 3)
    ta, tb = (torch.from_numpy(x).permute(2, 0, 1)[None].float() for x in (a, b))
    out = flow_between(ta, tb, 0.5, shift_flow(0, 3, 32, 24), shift_flow(0, -3, 32, 24))
    want = (big[2:34] + big[3:35]) / 2  # mid(y) = a(y - 1.5)
    inside = slice(3, 29)
    assert torch.allclose(out[0].permute(1, 2, 0)[inside].double(), torch.from_numpy(want[inside]), atol=1e-5)


def test_the_flow_in_between_without_motion_is_the_cross_fade():
    a, b = texture(16, 16, 2), texture(16, 16, 3)
    zero = lambda x, y: torch.zeros(1, 2, 16, 16)  # noqa: E731
    for t, frame in zip((1 / 3, 2 / 3), gap_frames(a, b, 2, "flow", zero)):
        assert np.abs(frame.astype(int) - blend(a, b, t).astype(int)).max() <= 1  # float32 vs float64 rounding


def test_where_the_two_flows_disagree_everywhere_the_in_between_is_the_cross_fade_of_the_warps():
    """Both ends hidden at every point (the flows do not return home): the weights fall back to (1-t, t), no NaN;
    at t = 1/2 both intermediate flows are 0 here, so the frame is (a + b) / 2."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 12, 12, generator=g), torch.rand(1, 3, 12, 12, generator=g)
    same = shift_flow(4, 0, 12, 12)
    out = flow_between(a, b, 0.5, same, same)
    assert torch.allclose(out, (a + b) / 2, atol=1e-6)


def test_blend_is_the_cross_fade_rule_exactly():
    a, b = texture(8, 12, 4), texture(8, 12, 5)
    frames = gap_frames(a, b, 3, "blend")
    for k, frame in enumerate(frames, 1):
        t = k / 4
        want = np.rint((1 - t) * a.astype(np.float64) + t * b.astype(np.float64)).astype(np.uint8)
        assert frame.dtype == np.uint8 and np.array_equal(frame, want), k
    assert not np.array_equal(frames[0], frames[2])


@pytest.mark.parametrize("method", ["blend", "flow"])
def test_the_given_frames_pass_unchanged_with_n_in_each_gap(method):
    frames = [texture(8, 8, s) for s in range(4)]
    zero = lambda x, y: torch.zeros(1, 2, 8, 8)  # noqa: E731
    out = list(inbetweens(iter(frames), 2, method, 10.0, flow=zero))
    assert len(out) == (4 - 1) * 3 + 1
    assert all(np.array_equal(out[3 * k], frames[k]) for k in range(4))
    assert not any(any(np.array_equal(out[i], f) for f in frames) for i in range(len(out)) if i % 3)
    assert [np.array_equal(x, y) for x, y in zip(inbetweens(iter(frames), 0, method, 10.0), frames)] == [True] * 4


def test_the_flow_method_loads_dis_only_when_used(monkeypatch):
    asked = []
    monkeypatch.setattr(interpolate, "default_flow", lambda: asked.append(1) or (lambda x, y: torch.zeros(1, 2, 8, 8)))
    frames = [texture(8, 8, s) for s in range(2)]
    assert len(list(inbetweens(frames, 0, "flow", 10.0))) == 2 and not asked
    assert len(list(inbetweens(frames, 1, "blend", 10.0))) == 3 and not asked
    assert len(list(inbetweens(frames, 1, "flow", 10.0))) == 3 and asked == [1]


def test_ffmpeg_minterpolate_writes_the_in_betweens_read_back(tmp_path):
    """ffmpeg's motion interpolation: (F-1)*(N+1)+1 frames at fps*(N+1), the given frames at every (N+1)-th place and
    the in-betweens moved a third and two thirds of the way (motion-compensated: nearest the 1 and 3 px shifts)."""
    big = texture(64, 112, 6, cell=12)
    frames = [big[:, 12 - 4 * i:108 - 4 * i] for i in range(4)]  # sliding right 4 px a frame
    made = list(inbetweens(frames, 2, "ffmpeg", 8.0))
    assert len(made) == 10
    for k in range(4):
        assert np.abs(made[3 * k].astype(int) - frames[k]).mean() < 2, k
    for k, near in ((1, 1), (2, 3), (4, 5), (5, 7)):
        gaps = [np.abs(made[k].astype(int)[:, 8:-8] - big[:, 12 - s:108 - s][:, 8:-8]).mean() for s in range(9)]
        assert int(np.argmin(gaps)) == near, (k, gaps)
    path = write_frames(iter(made), tmp_path / "v.mp4", 24.0)
    back, fps = read_video_frames(path)
    assert len(back) == count_frames(path) == 10 and fps == pytest.approx(24.0)


def test_ffmpeg_refusing_the_filter_is_one_line(monkeypatch):
    import imageio_ffmpeg

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: "/bin/false")
    with pytest.raises(VqclipError) as info:
        list(inbetweens([texture(8, 8)] * 2, 1, "ffmpeg", 8.0))
    assert "minterpolate" in str(info.value) and "\n" not in str(info.value)


def test_a_frame_that_cannot_be_read_stops_ffmpeg_s_in_betweens_with_its_error():
    def frames():
        yield texture(32, 32, 0)
        yield texture(32, 32, 1)
        raise VqclipError("frames/000002.png: not a PNG")

    with pytest.raises(VqclipError, match="000002.png: not a PNG"):
        list(inbetweens(frames(), 1, "ffmpeg", 8.0))
    assert list(inbetweens([], 1, "ffmpeg", 8.0)) == []


@pytest.fixture(scope="module")
def runs(tiny_job, tmp_path_factory):
    """Tiny still runs of 5 saved frames (lr 1: each frame differs): no in-betweens, 2 cross-faded ones, and 2 with
    video_length 2 s, as mp4 and as GIF."""
    root = tmp_path_factory.mktemp("interp")

    def job(name, **output):
        return {**tiny_job, "prompt": "a red cat", "steps": 4, "seed": 3, "optimizer": {"lr": 1.0},
                "output": {"dir": str(root / name), "progress": False, "save_every": 1, "fps": 8, **output}}
    fade = {"interpolate": 2, "interpolate_method": "blend"}
    return {name: run_job(build_config(job(name, **output)), cache=CACHE) for name, output in (
        ("none", {}), ("blend", fade), ("length", {**fade, "video_length": 2.0}),
        ("gif", {**fade, "video_format": "gif", "video_length": 2.0}))}


def test_no_in_betweens_write_the_video_of_the_saved_frames_as_before(runs, tmp_path):
    run = runs["none"]
    assert len(run.frames) == 5
    before = write_video(run.frames, tmp_path / "before.mp4", 8.0)  # what the run wrote without output.interpolate
    mine, fps = read_video_frames(run.video)
    theirs, _ = read_video_frames(before)
    assert fps == pytest.approx(8.0) and len(mine) == 5
    assert all(np.array_equal(x, y) for x, y in zip(mine, theirs))


def test_in_betweens_are_in_the_video_only_at_n_plus_1_times_the_fps(runs, tmp_path):
    run, plain = runs["blend"], runs["none"]
    assert sorted(p.name for p in (run.dir / "frames").glob("*.png")) == [p.name for p in plain.frames]
    back, fps = read_video_frames(run.video)
    assert len(back) == count_frames(run.video) == (5 - 1) * 3 + 1 and fps == pytest.approx(24.0)
    saved = [np.asarray(Image.open(p).convert("RGB")) for p in plain.frames]  # the same frames (same seed)
    assert all(np.abs(x.astype(int) - y).mean() > 10 for x, y in zip(saved, saved[1:]))  # that differ
    want = [saved[0]]
    for a, b in zip(saved, saved[1:]):  # the cross-fade rule, written here; encoded alike, read back alike
        want += [np.rint(a * (1 - t) + b * t).astype(np.uint8) for t in (1 / 3, 2 / 3)] + [b]
    expected, _ = read_video_frames(write_mp4(want, tmp_path / "want.mp4", 24.0) or tmp_path / "want.mp4")
    assert all(np.array_equal(x, y) for x, y in zip(back, expected))


def test_video_length_still_sets_the_length_with_in_betweens(runs):
    back, fps = read_video_frames(runs["length"].video)
    assert len(back) == 13 and fps == pytest.approx(13 / 2.0)  # 4 gaps of 3 frames and the last, in 2 s
    with Image.open(runs["gif"].video) as gif:
        total = sum(gif.seek(i) or gif.info["duration"] for i in range(gif.n_frames))
    assert total == pytest.approx(2000, abs=10)


def test_the_flow_method_of_a_run_uses_the_flow_both_ways(tiny_job, tmp_path, monkeypatch):
    pairs = []

    def flow(x, y):
        pairs.append((x.shape, y.shape))
        return torch.zeros(1, 2, *x.shape[-2:])
    monkeypatch.setattr(interpolate, "default_flow", lambda: flow)
    run = run_job(build_config({**tiny_job, "prompt": "a red cat", "steps": 2, "seed": 3, "output": {
        "dir": str(tmp_path / "r"), "progress": False, "save_every": 1, "interpolate": 1}}), cache=CACHE)
    assert len(pairs) == 2 * 2 and all(p == ((1, 3, 32, 32),) * 2 for p in pairs)  # 2 gaps, both ways
    assert count_frames(run.video) == 5


@pytest.mark.parametrize("value, ok", [(0, True), (15, True), (-1, False), (16, False)])
def test_interpolate_is_0_to_15_one_line_exit_2(tiny_args, tmp_path, capsys, value, ok):
    code = main(["generate", "a red cat", *tiny_args, "--steps", "1", "--save-every", "1", "--interpolate",
                 str(value), "--interpolate-method", "blend", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    if ok:
        assert code == 0 and (tmp_path / "r" / "progress.mp4").is_file()
        assert count_frames(tmp_path / "r" / "progress.mp4") == 2 + value
    else:
        assert code == 2 and "\n" not in err and "output.interpolate: must be in 0..15" in err, err
        assert not (tmp_path / "r").exists()


def test_an_unknown_method_is_refused_in_one_line():
    cfg = merge_layers([("job", {"prompt": "x", "output": {"interpolate": 1}})])
    cfg.output.interpolate_method = "optical"
    with pytest.raises(VqclipError) as info:
        check(cfg)
    assert str(info.value).startswith("output.interpolate_method: unknown value 'optical'; use one of flow, blend, "
                                      "ffmpeg")
    for method in ("flow", "blend", "ffmpeg"):
        check(merge_layers([("job", {"prompt": "x", "output": {"interpolate_method": method}})]))


def test_a_restyle_with_in_betweens_keeps_its_length_and_the_whole_audio_track(tiny_args, tmp_path):
    """6 input frames at 6 fps, 1 in-between: 11 frames at 12 fps, and the input's whole tone, neither cut nor
    padded (the audio is muxed for the video's own length)."""
    from test_restyle import RATE, decode_audio, make_video, restyle_args

    video, out = make_video(tmp_path), tmp_path / "run"
    assert main(["restyle", str(video), "an oil painting", *restyle_args(tiny_args, steps=1), "--size", "32", "32",
                 "--interpolate", "1", "--interpolate-method", "blend", "--out", str(out)]) == 0
    frames, fps = read_video_frames(out / "restyled.mp4")
    assert len(frames) == (6 - 1) * 2 + 1 and fps == pytest.approx(12.0)
    assert len(list((out / "frames").glob("*.png"))) == 6
    assert abs(len(decode_audio(out / "restyled.mp4")) - len(decode_audio(video))) < RATE * 0.1


def test_the_flow_method_without_opencv_is_refused_before_the_run(monkeypatch):
    import vqclip.config.checks as checks

    monkeypatch.setattr(checks, "find_spec", lambda name: None if name == "cv2" else object())
    cfg = merge_layers([("job", {"prompt": "x", "output": {"interpolate": 1}})])
    with pytest.raises(VqclipError) as info:
        check_inputs(cfg)
    assert str(info.value).startswith("output.interpolate_method: flow needs OpenCV (`pip install 'vqclip[flow]'`)")
    for output in ({"interpolate": 0}, {"interpolate": 1, "interpolate_method": "blend"},
                   {"interpolate": 1, "video": False}):  # no flow asked for
        check_inputs(merge_layers([("job", {"prompt": "x", "output": output})]))


def test_ffmpeg_in_betweens_need_32_px_a_side_said_before_the_run():
    """ffmpeg's minterpolate refuses frames under 32 px a side (tested below on the filter itself)."""
    def cfg(w, h, method="ffmpeg"):
        return merge_layers([("job", {"prompt": "x", "size": [w, h], "output": {
            "interpolate": 1, "interpolate_method": method}})])
    for w, h in ((32, 32), (64, 32), (32, 48)):
        check(cfg(w, h))
    check(cfg(16, 16, "blend"))
    for w, h in ((28, 32), (32, 28)):
        with pytest.raises(VqclipError) as info:
            check(cfg(w, h))
        assert str(info.value).startswith("output.interpolate_method: ffmpeg's minterpolate needs frames of at least "
                                          "32 px a side"), str(info.value)
    with pytest.raises(VqclipError, match="Height or width < 32"):
        list(inbetweens([texture(28, 32)] * 2, 1, "ffmpeg", 8.0))
    assert len(list(inbetweens([texture(32, 32)] * 2, 1, "ffmpeg", 8.0))) == 3


def test_a_killed_zoom_with_in_betweens_resumes_to_the_same_video(tiny_job, tmp_path):
    def job(out):
        return build_config({**tiny_job, "prompt": "a red cat", "steps": 6, "seed": 11, "state_every": 2,
                             "animation": {"mode": "zoom", "every": 2, "zoom": 1.1},
                             "output": {"dir": str(out), "progress": False, "save_every": 1, "interpolate": 2,
                                        "interpolate_method": "blend"}})
    whole = run_job(job(tmp_path / "whole"), cache=CACHE)
    with pytest.raises(Killed):
        run_job(job(tmp_path / "killed"), cache=CACHE, extra_callbacks=[kill_at(5)])
    assert not (tmp_path / "killed" / "progress.mp4").exists()
    resumed = resume_run(tmp_path / "killed", cache=CACHE)
    mine, fps = read_video_frames(resumed.video)
    theirs, their_fps = read_video_frames(whole.video)
    assert len(mine) == len(theirs) == (len(whole.frames) - 1) * 3 + 1 and fps == their_fps
    assert all(np.array_equal(x, y) for x, y in zip(mine, theirs))
