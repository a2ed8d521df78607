"""Best of n as the first part of a run: its trial steps (a share of the run's steps, or a number of them), a stop
during the trials that leaves every start to resume with, the preview and frames that show the start ranked to go
on, and a loss curve with every step that was run."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.files.images import to_pil
from vqclip.modes.bestofn import start_scores, trial_steps
from vqclip.modes.still import saved_starts
from vqclip.optim.cutouts import Cutouts
from vqclip.optim.objective import decode_image
from vqclip.runs.callbacks import StopAfter, with_trials
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import generate, run_job
from vqclip.runs.resume import resume_run, state_path
from vqclip.runs.statefile import StateSaver, load_state

STEPS, TRIALS, STARTS = 8, 4, 3  # candidates.steps 0.5 of 8 steps: 4 trial steps, then 4 of the chosen start


def job(tiny_job, **over):
    layer = {"prompt": "a red circle", "steps": STEPS, "seed": 5, "candidates": {"n": STARTS, "steps": 0.5, "views": 4},
             **over}
    return merge_layers([("tiny", tiny_job), ("test", layer)])


def cfg_of(n, share, steps):
    return SimpleNamespace(steps=steps, candidates=SimpleNamespace(n=n, steps=share))


@pytest.mark.parametrize("n, share, steps, expected", [
    (6, 0.25, 100, 25),   # a share of the run
    (6, 0.5, 5, 3),       # 2.5 rounds half up
    (6, 0.49, 5, 2),      # 2.45 rounds down
    (6, 0.01, 6, 1),      # 0.06 steps: at least one trial step
    (6, 0.999, 100, 100),  # 99.9 rounds to the whole run
    (6, 1, 100, 1),       # from 1 on, a number of steps: 1 is one step, not the whole run
    (6, 30, 100, 30),     # an old job file's integer: still that many steps
    (6, 300, 100, 100),   # never more than the run
    (1, 0.5, 100, 0),     # best of n off
    (2, 0.5, 0, 0),       # a run of no steps
])
def test_trial_steps_are_a_share_below_1_and_a_number_of_steps_from_1(n, share, steps, expected):
    assert trial_steps(cfg_of(n, share, steps)) == expected


def test_candidates_steps_takes_a_share_or_a_whole_number_and_refuses_the_rest(tiny_job):
    for good in (0.5, 1, 3):
        assert job(tiny_job, candidates={"n": 2, "steps": good}).candidates.steps == good
    for bad in (0, -0.5, 30.5, math.nan, math.inf):
        with pytest.raises(VqclipError, match="candidates"):
            job(tiny_job, candidates={"n": 2, "steps": bad})


def test_a_default_mini_run_spends_a_part_of_its_steps_on_trials_and_films_them_all():
    """The preset's best of n tries its starts for a part of the run, and the chosen start has steps of its own; its
    video has a frame every few steps, over a second or more."""
    cfg = build_config({"prompt": "a red circle on a blue background", "model": "mini"})
    assert cfg.candidates.n > 1
    assert 0 < trial_steps(cfg) <= cfg.steps // 2
    frames = cfg.steps // cfg.output.save_every + 1
    assert frames >= 10 and frames / cfg.output.fps >= 1


def _frames(run):
    return {p.name: np.asarray(Image.open(p)) for p in sorted((run.dir / "frames").iterdir())}


@pytest.fixture(scope="module")
def whole(tiny_job, tmp_path_factory):
    """The uninterrupted run, and every trial event it showed (step, best, image [n,3,H,W], loss)."""
    events = []
    record = with_trials(lambda e: events.append(e) if e.trial else None)
    out = {"dir": str(tmp_path_factory.mktemp("whole") / "run"), "save_every": 1, "video": False}
    return run_job(job(tiny_job, output=out), extra_callbacks=[record]), events


@pytest.mark.parametrize("stop_after, starts_kept", [(TRIALS - 1, STARTS), (TRIALS, 1)])
def test_a_run_stopped_in_or_at_the_end_of_its_trials_resumes_as_if_never_stopped(tiny_job, tmp_path, whole,
                                                                                   stop_after, starts_kept):
    """Stopped before the pick, state.pt holds every start at that step (and the result is the start ranked to go
    on); stopped at the pick, the chosen start. Either way `resume` ends with the uninterrupted run's image, frames
    and step count."""
    out = {"dir": str(tmp_path / "run"), "save_every": 1, "video": False}
    run = run_job(job(tiny_job, output=out), extra_callbacks=[StopAfter(stop_after)])
    assert run.interrupted and run.result.steps == stop_after and run.final.is_file()
    saved = load_state(state_path(run.dir))
    assert saved["z"].shape[0] == starts_kept and saved["step"] == stop_after
    again = resume_run(run.dir)
    assert not again.interrupted and again.result.steps == STEPS
    assert torch.equal(again.result.image, whole[0].result.image)
    got, expected = _frames(again), _frames(whole[0])
    assert list(got) == list(expected) and all(np.array_equal(got[k], expected[k]) for k in got)


def _ranks(cfg, models, images, step, text=None):
    """The starts ranked by an independent scoring of images [n,3,H,W] against `text` (default: the prompt): the
    job's CLIP on `candidates.views` views of its cutout settings, drawn from the run's seed."""
    clip, c = models.clips[0][0], cfg.cutouts
    views = {clip.image_size: Cutouts(clip.image_size, cfg.candidates.views, c.pow, c.min_size, c.augments, c.noise)}
    target = clip.encode_text([text or cfg.prompt]).detach()
    scores = start_scores(images, models.clips, [target], torch.ones(1), views, torch.device("cpu"), None, cfg.seed)
    return list(np.argsort(scores, kind="stable"))


def test_the_preview_and_frames_of_the_trials_show_the_start_ranked_to_go_on(tiny_job, tiny_models, whole):
    """At every frame step of the trials the starts are scored: the event's `best` is the lowest-scored start, its
    `preview` that start's image, and the frame written that image; a stop during the trials makes it the result."""
    run, events = whole
    cfg = run.config
    assert [e.step for e in events] == list(range(TRIALS)) and all(e.trial == STARTS for e in events)
    frames = _frames(run)
    leads = []
    for e in events:
        lead = _ranks(cfg, tiny_models, e.image, e.step)[0]
        leads.append(lead)
        assert e.best == lead
        assert np.array_equal(np.asarray(e.preview), np.asarray(to_pil(e.image[lead:lead + 1])))
        assert np.array_equal(frames[f"{e.step:06d}.png"], np.asarray(e.preview))
    assert any(leads), "the seed should make another start than the first lead at some step"
    # stopped after 2 steps: the result is the start ranked first on the image of step 2
    stopped = generate(job(tiny_job), tiny_models, [StopAfter(2)])
    assert stopped.stopped and stopped.steps == 2
    rows = stopped.state.z.shape[0]
    assert rows == STARTS
    with torch.no_grad():
        images = decode_image(tiny_models.vqgan, stopped.state.z.detach())
    lead = _ranks(cfg, tiny_models, images, 2)[0]
    assert stopped.start == lead and torch.allclose(stopped.image, images[lead:lead + 1], atol=1e-4)


def test_the_loss_curve_holds_every_step_the_trials_as_the_mean_over_the_starts(whole):
    run, events = whole
    losses = run.result.losses
    assert len(losses) == STEPS
    assert losses[:TRIALS] == pytest.approx([e.loss for e in events], rel=1e-6)
    assert all(math.isfinite(x) for x in losses[TRIALS:])


def test_a_saved_state_holds_the_chosen_start_or_every_start_of_the_trials():
    """Resuming: one row is the chosen start's; n rows are the trials' when n is the job's candidates.n; a state
    from a job with another n is refused with what to do."""
    z = lambda rows: {"z": torch.zeros(rows, 4, 2, 2)}  # noqa: E731
    assert saved_starts(z(1), 3) == 1 and saved_starts(z(3), 3) == 3 and saved_starts(z(1), 1) == 1
    for rows, n in ((3, 2), (3, 4), (3, 1)):
        with pytest.raises(VqclipError, match=f"holds the {rows} starts of best-of-n trials.*candidates.n={n}"):
            saved_starts(z(rows), n)


def test_the_state_saver_runs_during_the_trials_with_every_start(tiny_job, tiny_models, tmp_path):
    """state.pt every `state_every` steps from the first step on, the trials included (a kill during them resumes)."""
    path, seen = tmp_path / "state.pt", {}
    saver = StateSaver(path, 2, STEPS)

    def keep(state, event):
        if path.is_file():
            seen.setdefault(state.step, load_state(path))

    generate(job(tiny_job), tiny_models, after=[saver, keep])
    assert seen[2]["step"] == 2 and seen[2]["z"].shape[0] == STARTS  # a trial step: every start
    assert seen[6]["step"] == 6 and seen[6]["z"].shape[0] == 1  # after the pick: the chosen start


def test_each_image_of_a_keep_batch_films_the_trials_as_its_rank_alone_does(tiny_job, tmp_path):
    """candidates.keep 2: the trials run once; the second image's frames (its trial frames from the shared trials,
    then its own) are those of a job with candidates.rank 1 run alone."""
    from vqclip.nets.load import ModelCache
    from vqclip.runs.batch import images_of
    from vqclip.runs.plan import place, run_plan

    layer = {**tiny_job, "prompt": "a red circle", "steps": 4, "seed": 3,
             "candidates": {"n": STARTS, "steps": 0.5, "views": 4, "keep": 2},
             "output": {"dir": str(tmp_path / "b"), "video": False, "progress": False, "save_every": 1}}
    cache = ModelCache()
    runs = run_plan(place([images_of(merge_layers([("t", layer)]))]), run_job, cache=cache)
    alone = run_job(merge_layers([("t", {**layer, "candidates": {**layer["candidates"], "keep": 1, "rank": 1},
                                         "output": {**layer["output"], "dir": str(tmp_path / "alone")}})]),
                    cache=cache)
    got, expected = _frames(runs[1]), _frames(alone)
    assert list(got) == list(expected) and all(np.array_equal(got[k], expected[k]) for k in got)
    assert not all(np.array_equal(got[k], _frames(runs[0])[k]) for k in ("000000.png", "000001.png"))


def test_in_a_story_the_starts_are_ranked_by_the_part_of_their_step(tiny_job, tiny_models):
    """'a ^ b' over 4 steps, tried for 3: the starts' images of steps 0 and 1 are ranked against 'a', that of step 2
    (the second part's first) against 'b'."""
    events = []
    cfg = job(tiny_job, prompt="a red circle ^ a blue square", steps=4, seed=5,
              candidates={"n": STARTS, "steps": 0.75, "views": 4}, output={"save_every": 1})
    generate(cfg, tiny_models, [with_trials(lambda e: events.append(e))])
    assert [e.step for e in events if e.trial] == [0, 1, 2]
    for e in events[:3]:
        text = "a red circle" if e.step < 2 else "a blue square"
        assert e.best == _ranks(cfg, tiny_models, e.image, e.step, text)[0]
    assert _ranks(cfg, tiny_models, events[2].image, 2, "a red circle")[0] != events[2].best  # the parts disagree
