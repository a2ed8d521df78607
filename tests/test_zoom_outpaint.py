"""Zoom moves with `animation.padding: outpaint`: the border a move uncovers starts as an outpaint's new area
(init.mask_init: keep and noise give the run generator's noise there, blur the blurred moved image), the covered part
is today's move exactly, a move that uncovers nothing is today's move and draws no noise, and a killed zoom-out
resumes to the uninterrupted run bit for bit."""

import math

import pytest
import torch
import torch.nn.functional as F

from test_resume_modes import assert_same_run, base, kill_at, resume, run, Killed
from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.modes.zoom import Motion, ZoomMoves, outpaint_move, transform_image, uncovered
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import generate

H, W = 32, 40
MOVES = [(0.8, 0.0, 0.0, 0.0), (0.9, 7.0, 2.0, -1.5), (1.0, 0.0, 3.0, 0.0), (1.1, 10.0, 0.0, 0.0)]


def outside(move, width=W, height=H, slack=0.0):
    """[1,1,H,W] bool: pixels whose sample point, Q = R^-1 (P - shift) / zoom in pixels from the centre (the
    documented move inverted, float64), lies past the outer pixel centres by more than `slack`; and whether some
    pixel lies past them by less than 2e-3 (a float tie with the move's 1e-3 slack, which the test avoids)."""
    zoom, angle, sx, sy = move
    a = math.radians(angle)
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    px, py = xx + 0.5 - width / 2 - sx, yy + 0.5 - height / 2 - sy
    qx = (math.cos(a) * px - math.sin(a) * py) / zoom + width / 2 - 0.5
    qy = (math.sin(a) * px + math.cos(a) * py) / zoom + height / 2 - 0.5
    gap = torch.minimum(torch.minimum(qx, width - 1 - qx), torch.minimum(qy, height - 1 - qy))
    return (gap < -slack)[None, None], bool(((gap < -1e-9) & (gap > -2e-3)).any())


def image_of(seed=0):
    return torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("move", MOVES)
def test_uncovered_is_where_the_move_samples_past_the_image(move):
    expected, tie = outside(move)
    assert not tie
    assert torch.equal(uncovered(W, H, *move).bool(), expected)


@pytest.mark.parametrize("move", MOVES[:3])
@pytest.mark.parametrize("how", ["keep", "noise", "blur"])
def test_the_uncovered_border_starts_as_a_new_area_and_the_covered_part_is_todays_move(move, how):
    image = image_of()
    new, tie = outside(move)
    assert not tie and new.any() and (~new).any()
    out = outpaint_move(image, move, how, torch.Generator().manual_seed(5))
    today = transform_image(image, *move)  # the default (reflection) move
    zeros = transform_image(image, *move, padding="zeros")
    inside = (~new).expand_as(out)
    assert torch.equal(out[inside], today[inside])
    assert torch.allclose(out[inside], zeros[inside], atol=1e-5, rtol=0)  # no covered pixel reads the padding
    if how == "blur":  # the moved image brought down to 1/16 of its sides and up again (bilinear)
        fill = F.interpolate(F.adaptive_avg_pool2d(today, (H // 16, W // 16)), size=(H, W), mode="bilinear",
                             align_corners=False)
    else:  # keep and noise: the generator's uniform noise
        fill = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(5))
    border = new.expand_as(out)
    assert torch.equal(out[border], fill[border])


@pytest.mark.parametrize("move", [(1.0, 0.0, 0.0, 0.0), (1.25, 0.0, 0.0, 0.0), (1.5, 30.0, 0.0, 0.0),
                                  (1.0, 90.0, 0.0, 0.0), (1.0, 180.0, 0.0, 0.0)])
def test_a_move_that_uncovers_nothing_is_todays_move_and_draws_no_noise(move):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert not outside(move, 32, 32, slack=1e-6)[0].any()
    generator = torch.Generator().manual_seed(3)
    before = generator.get_state()
    for how in ("keep", "noise", "blur"):
        assert torch.equal(outpaint_move(image, move, how, generator), transform_image(image, *move))
    assert torch.equal(generator.get_state(), before)


def test_the_other_paddings_ignore_the_generator():
    motion = Motion([(0, 0.8)], [(0, 0.0)], [(0, 0.0)], [(0, 0.0)], padding="zeros")
    image = image_of()
    assert torch.equal(motion.apply(image, 0, torch.Generator().manual_seed(1), "noise"),
                       transform_image(image, 0.8, padding="zeros"))


def test_outpaint_is_a_padding_choice_and_a_wrong_one_is_refused(tiny_job):
    job = {**tiny_job, "prompt": "a tunnel", "animation": {"mode": "zoom", "padding": "outpaint"}}
    assert build_config(job).animation.padding == "outpaint"
    with pytest.raises(VqclipError, match="animation.padding"):
        build_config({**job, "animation": {"mode": "zoom", "padding": "outpainting"}})


EVERY, STEPS = 2, 5


@pytest.fixture(scope="module", params=["keep", "blur"])
def moves(request, tiny_job, tiny_models):
    """A 5-step zoom-out run (moves after steps 0, 2, 4) with outpaint padding: what each move saw and left."""
    cfg = merge_layers([("tiny", tiny_job), ("t", {
        "prompt": "a tunnel", "steps": STEPS, "seed": 2, "cutouts": {"n": 2}, "init": {"mask_init": request.param},
        "animation": {"mode": "zoom", "every": EVERY, "zoom": "0:0.9, 4:0.7", "padding": "outpaint"}})])
    seen, real = [], ZoomMoves.__call__

    def spy(self, state, event):
        before, rng = self.objective.decode(state.z).detach().float(), state.rng.get_state()
        out = real(self, state, event)
        if event.step % EVERY == 0:
            seen.append({"step": event.step, "before": before, "rng": rng, "z": state.z.detach().clone(),
                         "z_init": state.z_init.clone(), "rng_after": state.rng.get_state(), "self": self})
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ZoomMoves, "__call__", spy)
        generate(cfg, tiny_models)
    return request.param, seen


def test_each_zoom_out_move_encodes_the_outpainted_move_drawn_from_the_run_generator(moves):
    """Zoom 0.9 -> 0.7 over steps 0..4: each move's latent (and init target) is the encoded image moved by that
    step's zoom, its uncovered border started as init.mask_init says, its noise from the run's generator."""
    how, seen = moves
    assert [s["step"] for s in seen] == [0, 2, 4]
    for s in seen:
        zoom = 0.9 - 0.05 * s["step"]
        generator = torch.Generator()
        generator.set_state(s["rng"])
        expected = outpaint_move(s["before"], (zoom, 0.0, 0.0, 0.0), how, generator)
        assert not torch.equal(expected, transform_image(s["before"], zoom))
        z = s["self"].objective.drawer.encode(expected)
        assert torch.allclose(s["z"], z, atol=1e-5) and torch.equal(s["z"], s["z_init"])
        assert torch.equal(s["rng_after"], generator.get_state())
        assert torch.equal(s["rng_after"], s["rng"]) == (how == "blur")  # only noise is drawn


def test_a_killed_zoom_out_with_outpaint_padding_resumes_to_the_uninterrupted_run(tiny_job, tmp_path):
    """Moves after steps 0, 3, 6, state.pt at 2, 4: the resumed run draws the border's noise of the move at 6 from
    the saved generator, as the uninterrupted run did."""
    over = {"state_every": 2, "animation": {"mode": "zoom", "every": 3, "zoom": 0.8, "rotate": 4,
                                            "padding": "outpaint"}}
    whole = run(build_config(base(tiny_job, tmp_path / "whole", **over)))
    with pytest.raises(Killed):
        run(build_config(base(tiny_job, tmp_path / "killed", **over)), extra_callbacks=[kill_at(6)])
    assert_same_run(resume(tmp_path / "killed"), whole)
