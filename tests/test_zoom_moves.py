"""A zoom run's moves against the documented rule: after the update of every `every`-th step the image is moved by
the key-framed motion OF THAT STEP, with the job's padding, and encoded back as the latent and its init target; the
optimiser restarts or keeps its momentum as `reset_optimizer` says; zoom and shift compose as documented."""

import pytest
import torch

from vqclip.config import merge_layers
from vqclip.modes.zoom import Zoom, ZoomMoves, transform_image
from vqclip.runs.pipeline import generate

EVERY, STEPS = 2, 5


class Sink:
    def __init__(self):
        self.written = []

    def write(self, index, image):
        self.written.append(index)

    def existing(self):
        return []


def zoom_job(tiny_job, **animation):
    return merge_layers([("tiny", tiny_job), ("t", {
        "prompt": "a tunnel", "steps": STEPS, "seed": 2, "cutouts": {"n": 2},
        "animation": {"mode": "zoom", "every": EVERY, "zoom": "0:1.0, 4:1.5", "shift_x": {0: 6, 4: 2},
                      "padding": "zeros", **animation}})])


@pytest.fixture(scope="module", params=[True, False], ids=["reset", "keep"])
def moves(request, tiny_job, tiny_models):
    """A 5-step zoom run (moves after steps 0, 2, 4) with what each hook call saw before and left after it."""
    cfg = zoom_job(tiny_job, reset_optimizer=request.param)
    seen, real, frames = [], ZoomMoves.__call__, Sink()

    def spy(self, state, event):
        before, z0, opt = self.objective.decode(state.z).detach(), state.z.detach().clone(), state.optimizer
        out = real(self, state, event)
        seen.append({"step": event.step, "before": before, "z0": z0, "z": state.z.detach().clone(),
                     "z_init": state.z_init.clone(), "momentum": bool(state.optimizer.state),
                     "same_optimizer": state.optimizer is opt})
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ZoomMoves, "__call__", spy)
        generate(cfg, tiny_models, frames=frames)
    return request.param, seen, frames.written


def test_every_kth_step_moves_by_that_steps_key_framed_motion_with_the_jobs_padding(moves, tiny_models):
    """zoom 1.0 -> 1.5 and shift_x 6 -> 2 over steps 0..4, linear: the moves after steps 0, 2 and 4 zoom 1, 1.25
    and 1.5 and shift 6, 4 and 2 pixels, the uncovered border filled with zeros; z and its init target both become
    the encoded moved image. Other steps leave z as the update left it."""
    _, seen, _ = moves
    assert [s["step"] for s in seen] == list(range(STEPS))
    for s in seen:
        if s["step"] % EVERY:
            assert torch.equal(s["z"], s["z0"])
            continue
        t = s["step"] / 4
        moved = transform_image(s["before"], zoom=1 + 0.5 * t, shift_x=6 - 4 * t, padding="zeros")
        assert s["step"] or moved[..., :6].abs().max() == 0  # the first move: shifted right 6 pixels, zero-filled
        expected = tiny_models.vqgan.encode(moved)
        torch.testing.assert_close(s["z"], expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(s["z_init"], expected, rtol=0, atol=1e-6)


def test_the_optimiser_restarts_after_each_move_unless_told_to_keep_it(moves):
    reset, seen, _ = moves
    for s in seen:
        if s["step"] % EVERY:
            assert s["same_optimizer"] and s["momentum"]
        else:
            assert s["momentum"] != reset and s["same_optimizer"] != reset


def test_one_frame_per_move(moves, tiny_job):
    _, _, written = moves
    assert written == [0, 2, 4] and Zoom().frame_every(zoom_job(tiny_job)) == EVERY


def test_zoom_and_shift_compose_as_documented():
    """Scale about the centre, then move by shift pixels: output pixel x shows input position (x - c - shift) / zoom
    + c, c the centre, on a horizontal ramp whose value is the position."""
    w = 32
    ramp = (torch.arange(w, dtype=torch.float32) / w).view(1, 1, 1, w).expand(1, 3, w, w)
    out = transform_image(ramp, zoom=2.0, shift_x=4.0, shift_y=3.0)
    c = (w - 1) / 2
    expected = ((torch.arange(w) - c - 4) / 2 + c) / w
    torch.testing.assert_close(out[0, 0, 16, 8:24], expected[8:24], rtol=0, atol=1e-5)
    assert torch.allclose(out[0, 0, 5:27, 12], out[0, 0, 16, 12].expand(22))  # a vertical shift moves no column


def test_shifts_are_in_pixels_of_each_axis_on_a_wide_image():
    image = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    moved = transform_image(image, shift_x=3, shift_y=2, padding="zeros")
    torch.testing.assert_close(moved[..., 2:, 3:], image[..., :-2, :-3], rtol=0, atol=1e-5)
    assert moved[..., :2, :].abs().max() == 0 and moved[..., :, :3].abs().max() == 0
