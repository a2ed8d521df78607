"""The flicker benchmark (benchmarks/flicker.py): its clip of known motion, its warp-error metric against cases with
a known answer, and its driver's mechanics on the tiny models (2 frames)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import flicker  # noqa: E402

from vqclip.files.jobyaml import load_yaml  # noqa: E402
from vqclip.mini.world import COLORS  # noqa: E402


def test_the_clip_moves_the_shape_by_speed_px_and_its_flow_and_occlusions_say_so():
    clip, flows, occluded = flicker.moving_clip(frames=4, size=48, speed=3)
    assert len(clip) == 4 and len(flows) == len(occluded) == 3 and clip[0].shape == (48, 48, 3)
    red, green = np.array(COLORS["red"]), np.array(COLORS["green"])
    for i in range(1, 4):
        prev, now = clip[i - 1], clip[i]
        on = (now == red).all(-1)
        assert on.sum() > 50 and ((now == red).all(-1) | (now == green).all(-1)).all()
        ys, xs = np.nonzero(on)
        assert (prev[ys, xs - 3] == red).all()  # each shape pixel was 3 px to the left
        assert np.array_equal(flows[i - 1][0][on], np.full(on.sum(), -3.0)) and not flows[i - 1][:, ~on].any()
        assert not flows[i - 1][1].any()
        uncovered = (prev == red).all(-1) & ~on  # background the shape left: prev does not show it
        assert np.array_equal(occluded[i - 1], uncovered) and uncovered.sum() > 0
    with pytest.raises(ValueError):
        flicker.moving_clip(frames=20, size=32, speed=2)  # would leave the frame


def test_frames_that_move_exactly_as_the_clip_have_no_warp_error():
    clip, flows, occluded = flicker.moving_clip(frames=3, size=32, speed=2)
    assert flicker.warp_error(clip[0], clip[1], flows[0], occluded[0]) == 0
    assert flicker.clip_error(clip, flows, occluded) == 0
    assert flicker.warp_error(clip[0], clip[1], -flows[0], occluded[0]) > 0.01  # the flow the wrong way round
    gap = np.abs(np.array(COLORS["red"]) - COLORS["green"]).mean() / 255  # where the shape was, counted
    assert flicker.warp_error(clip[0], clip[1], flows[0], np.zeros_like(occluded[0])) == pytest.approx(
        gap * occluded[0].sum() / 32 ** 2, abs=1e-6)
    ahead = (clip[1] == COLORS["red"]).all(-1) & (clip[0] == COLORS["green"]).all(-1)  # no motion assumed: the
    assert flicker.warp_error(clip[0], clip[1], np.zeros_like(flows[0]), occluded[0]) == pytest.approx(  # edge ahead
        gap * ahead.sum() / (32 ** 2 - occluded[0].sum()), abs=1e-6)


def test_a_known_brightness_change_is_the_warp_error():
    rng = np.random.default_rng(0)
    prev = rng.uniform(0, 0.8, (16, 20, 3))
    flow = np.zeros((2, 16, 20))
    flow[0] = 1.0  # next(p) = prev(p + 1 px right): whole pixels, so the warp reads pixel values exactly
    occluded = np.zeros((16, 20), bool)
    occluded[:, -1] = True  # the last column reads past the edge
    moved = np.concatenate([prev[:, 1:], prev[:, -1:]], axis=1)
    assert flicker.warp_error(prev, moved + 0.125, flow, occluded) == pytest.approx(0.125, abs=1e-12)
    garbage = moved.copy()
    garbage[:, -1] = 1.0  # only in the occluded column: not counted
    assert flicker.warp_error(prev, garbage, flow, occluded) == pytest.approx(0, abs=1e-12)
    garbage[3, 4] += 0.5  # one pixel outside the occlusions, in every channel
    assert flicker.warp_error(prev, garbage, flow, occluded) == pytest.approx(0.5 / (16 * 19), abs=1e-12)
    as_bytes = (np.clip(prev, 0, 1) * 255).round().astype(np.uint8)
    brighter = np.concatenate([as_bytes[:, 1:], as_bytes[:, -1:]], axis=1) + 51  # uint8 frames are read as /255
    assert flicker.warp_error(as_bytes, brighter, flow, occluded) == pytest.approx(0.2, abs=1e-9)


def test_clip_error_is_the_mean_over_pairs_and_refuses_a_short_clip():
    clip, flows, occluded = flicker.moving_clip(frames=3, size=32, speed=2)
    shifted = [clip[0], clip[1], np.clip(clip[2].astype(int) + 51, 0, 255).astype(np.uint8)]
    second = flicker.warp_error(shifted[1], shifted[2], flows[1], occluded[1])
    assert second > 0 and flicker.clip_error(shifted, flows, occluded) == pytest.approx(second / 2)
    with pytest.raises(ValueError):
        flicker.clip_error(clip[:2], flows, occluded)


def test_the_table_gives_the_ratio_to_blend_only():
    text = flicker.table({"blend-0": 0.03, "blend": 0.04, "warp-init": 0.01})
    rows = [line.split("|")[1:-1] for line in text.splitlines()[2:]]
    assert [[c.strip() for c in r] for r in rows] == [["blend-0", "0.0300", "0.75"], ["blend", "0.0400", "1.00"],
                                                      ["warp-init", "0.0100", "0.25"]]
    assert "| - |" in flicker.table({"blend-0": 0.03})  # no blend-only run: no ratio


def test_the_driver_restyles_the_clip_once_per_setting(tiny_args, tmp_path, capsys):
    args = [a for a in tiny_args if a not in ("--size", "32")]  # the driver sets the size
    out, report = tmp_path / "runs", tmp_path / "f.json"
    rows = flicker.main(["--settings", "blend-0,blend", "--frames", "2", "--size", "32", "--steps", "1", "--model",
                         "", "--out", str(out), "--json", str(report), "--", *args])
    assert list(rows) == ["blend-0", "blend"] and all(np.isfinite(v) and v > 0 for v in rows.values())
    for name, blend in (("blend-0", 0.0), ("blend", 0.5)):
        job = load_yaml(out / name / "job.yaml")
        assert job["restyle"]["blend"] == blend and job["restyle"]["steps_per_frame"] == 1 and job["seed"] == 0
        assert len(list((out / name / "frames").glob("*.png"))) == 2
    assert json.loads(report.read_text())["warp_error"] == rows
    assert "| blend | " in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        flicker.main(["--settings", "blend,wobble"])
    assert info.value.code == 2
