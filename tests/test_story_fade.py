"""A story's fade (`story_fade`): at each keyframe after the first, the image moves a share of the way to a flat
canvas in the colour that keyframe names after 'on' (else its own mean colour) and the run goes on from it with a
fresh optimiser; a resume across the fade ends as the uninterrupted run."""

import pytest
import torch

from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.optim.schedules import Keyframe
from vqclip.modes.story import fade_color
from vqclip.runs.callbacks import StopAfter
from vqclip.runs.pipeline import generate, run_job
from vqclip.runs.resume import resume_run

GREEN = [0.0, 128 / 255, 0.0]  # CSS "green", as init.kind background reads colour names
STORY = "a red circle on a blue background ^ a yellow square on a green background"


def job(tiny_job, **over):
    layer = {"prompt": STORY, "steps": 4, "seed": 2, "init": {"kind": "background"}, "candidates": {"n": 1}, **over}
    return merge_layers([("tiny", tiny_job), ("test", layer)])


def latents_at(cfg, models, steps=(1, 2)):
    """{step: (latent [B,E,h,w], optimiser state)} right after the hooks of the updates that reach `steps`."""
    seen = {}

    def record(state, event):
        if state.step in steps:
            seen[state.step] = state.z.detach().clone(), dict(state.optimizer.state)

    generate(cfg, models, after=[record])
    return seen


def _expected(models, z, rgb, share):
    """The fade written out: decode the codes, blend towards the flat colour, encode with the VQGAN."""
    from vqclip.nets.quantize import codes_to_latent, nearest_codes

    vq = models.vqgan
    with torch.no_grad():
        image = vq.decode(codes_to_latent(nearest_codes(z, vq.codebook), vq.codebook)).clamp(0, 1)
        flat = torch.tensor(rgb).view(1, 3, 1, 1) if rgb is not None else image.mean((2, 3), keepdim=True)
        return vq.encode((1 - share) * image + share * flat)


@pytest.mark.parametrize("story, rgb", [(STORY, GREEN), ("a red circle ^ a blue square", None)])
def test_at_the_keyframe_the_image_fades_towards_the_next_parts_background(tiny_job, tiny_models, story, rgb):
    """The keyframe at step 2 of 4: the latent after that update is the encoded blend of the unfaded run's image with
    the new part's background (or the image's mean colour), and Adam starts afresh; before it, nothing changes."""
    plain = latents_at(job(tiny_job, prompt=story), tiny_models)
    faded = latents_at(job(tiny_job, prompt=story, story_fade=0.6), tiny_models)
    assert torch.allclose(faded[2][0], _expected(tiny_models, plain[2][0], rgb, 0.6), atol=1e-5)
    assert not torch.allclose(faded[2][0], plain[2][0], atol=1e-3) and faded[2][1] == {}
    assert torch.equal(faded[1][0], plain[1][0]) and faded[1][1] != {}  # before the keyframe: the same run
    assert plain[2][1] != {}  # without a fade, the keyframe keeps the optimiser's state


def test_the_fade_colour_is_the_background_a_pulling_text_names():
    assert fade_color(Keyframe(10, "a yellow square on a green background")) == GREEN
    assert fade_color(Keyframe(10, "a red circle on blue:-1|a square on a green background:2")) == GREEN
    assert fade_color(Keyframe(10, "a yellow square")) is None


def test_a_story_stopped_at_its_keyframe_resumes_past_the_fade_as_if_never_stopped(tiny_job, tmp_path):
    """Stopped right after the fade (state.pt holds the faded latent, step 3 of 6 with best of 2 starts tried for
    3 steps: the fade runs on every start, then the pick): the resume does not fade again and ends as the whole run."""
    over = {"steps": 6, "story_fade": 0.5, "candidates": {"n": 2, "steps": 0.5, "views": 2}}
    out = lambda name: {"dir": str(tmp_path / name), "save_every": 0, "video": False}  # noqa: E731
    run = run_job(job(tiny_job, **over, output=out("run")), extra_callbacks=[StopAfter(3)])
    assert run.interrupted and run.result.steps == 3
    again = resume_run(run.dir)
    whole = run_job(job(tiny_job, **over, output=out("whole")))
    assert torch.equal(again.result.image, whole.result.image)


def test_story_fade_is_a_share_from_0_to_1(tiny_job):
    for good in (0, 1, 0.5):
        assert job(tiny_job, story_fade=good).story_fade == good
    for bad in (-0.1, 1.01):
        with pytest.raises(VqclipError, match="story_fade: must be in"):
            job(tiny_job, story_fade=bad)
