"""Best of n's pick against an independent computation: the trials are capped at `steps`, every start's score is the
mean spherical distance of its views to the prompts of the step the trials ended at, the kept start (by rank) takes
its own latent, init target and trial frames, and the images of one batch share the trials."""

import pytest
import torch

from runs import Run, Sink
from tiny import write_clip
from vqclip.config import merge_layers
from vqclip.modes.base import RunContext
from vqclip.modes.bestofn import best_of_n, start_scores, trial_steps
from vqclip.nets.clip import load_clip
from vqclip.nets.device import seeded
from vqclip.nets.load import Models
from vqclip.optim.cutouts import Cutouts
from vqclip.runs.callbacks import with_trials
from vqclip.runs.pipeline import generate

CPU = torch.device("cpu")
SEED = 3


def job(tiny_job, **over):
    return merge_layers([("tiny", tiny_job), ("test", {"prompt": "a red circle", "steps": 6, "seed": SEED, **over})])


def views_of(clip, cfg) -> Cutouts:
    c = cfg.cutouts
    return Cutouts(clip.image_size, cfg.candidates.views, c.pow, c.min_size, c.augments, c.noise)


def distances(clip, images, texts, views, draw) -> torch.Tensor:
    """[B, T]: each image's mean over the views of arccos(cos)^2 / 2 to each text (written out, not vqclip's loss)."""
    rows = []
    with torch.no_grad():
        text = clip.encode_text(texts)
        for k in range(len(images)):
            cos = clip.encode_image(views.apply(images[k:k + 1], draw)) @ text.T
            rows.append((cos.clamp(-1, 1).arccos() ** 2 / 2).mean(0))
    return torch.stack(rows)


def by_hand(cfg, models, steps):
    """The n starts run together for `steps` steps by hand: (the run, the images [n,3,H,W] of each step)."""
    with seeded(CPU, SEED):
        run = Run(cfg, models, CPU, SEED, starts=cfg.candidates.n)
        images = [run.step().image for _ in range(steps)]
        return run, images


# ---- how many trial steps ----

@pytest.mark.parametrize("steps, trials", [(1, 1), (2, 2), (3, 2)])  # candidates.steps 2: above, at and below steps
def test_the_trials_never_run_past_the_runs_steps(tiny_job, tiny_models, steps, trials):
    """A preset's candidates.steps longer than the job's steps (mini: 100 trial steps, `--steps 20`) runs `steps`
    trial steps and no more: the pick is then of finished images."""
    cfg = job(tiny_job, steps=steps, cutouts={"n": 2}, candidates={"n": 2, "steps": 2, "views": 2})
    assert trial_steps(cfg) == trials and trial_steps(job(tiny_job, candidates={"steps": 2})) == 0  # n = 1: none
    events = []
    result = generate(cfg, tiny_models, [with_trials(lambda e: events.append((e.trial, e.step, e.total)))])
    assert events == [(2, s, steps) for s in range(trials)] + [(0, s, steps) for s in range(trials, steps)]
    assert result.steps == steps


# ---- the scores, the pick and what goes on ----

STORY = {"prompt": "a red cat ^ a blue dog", "change_every": 3, "negative": ["blurry"], "steps": 6,
         "init": {"kind": "random", "weight": 0.5}, "candidates": {"n": 3, "steps": 3, "views": 3}}


@pytest.fixture(scope="module")
def story_pick(tiny_job, tiny_models):
    """A story's starts tried for 3 steps (its second part, 'a blue dog', holds from step 3) and picked twice from
    one memo of trials: rank 0, then rank 1; with the trials run by hand and scored independently."""
    cfg = job(tiny_job, **STORY, output={"save_every": 1})
    memo, picks = {}, []
    for rank in (0, 1):
        one = job(tiny_job, **{**STORY, "candidates": {**STORY["candidates"], "rank": rank}},
                  output={"save_every": 1, "dir": f"image-{rank}"})
        frames, events = Sink(), []
        ctx = RunContext(one, tiny_models, CPU, SEED, trial_callbacks=[events.append], frames=frames, trials=memo)
        with seeded(CPU, SEED):
            run = Run(one, tiny_models, CPU, SEED, starts=3)
            pick = best_of_n(ctx, run.objective, run.state, frame_every=1)
        picks.append((pick, run, frames, events))
    hand, images = by_hand(cfg, tiny_models, 3)
    clip = tiny_models.clips[0][0]
    views = views_of(clip, cfg)
    with seeded(CPU, SEED):  # the scoring views: one draw from the job's seed
        draw = views.draw(1, 32, 32)
    d = distances(clip, hand.decode().detach(), ["a red cat", "a blue dog", "blurry"], views, draw)
    return picks, hand, images, d


def test_each_starts_score_is_its_distance_to_the_prompts_of_the_step_the_trials_ended_at(story_pick):
    """At step 3 the story aims at 'a blue dog' (weight 1) and pushes from 'blurry' (-1); 'a red cat' has weight 0."""
    picks, _, _, d = story_pick
    pick = picks[0][0]
    expected = (d[:, 1] - d[:, 2]).tolist()
    assert pick.scores == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert pick.scores != pytest.approx((d[:, 0] - d[:, 2]).tolist(), rel=1e-3)  # the first part's would differ
    assert len(set(pick.scores)) == 3


@pytest.mark.parametrize("rank", [0, 1])
def test_the_ranked_start_goes_on_with_its_own_latent_init_target_and_frames(story_pick, rank):
    picks, hand, images, d = story_pick
    pick, run, frames, _ = picks[rank]
    order = sorted(range(3), key=(d[:, 1] - d[:, 2]).tolist().__getitem__)
    k = order[rank]
    assert pick.start == k and run.state.start == k and run.state.starts == 1 and run.state.step == 3
    assert torch.equal(run.z.detach(), hand.z.detach()[k:k + 1])
    assert torch.equal(run.z_init, hand.z_init[k:k + 1])  # its own start, not start 0's
    assert not torch.equal(hand.z_init[k], hand.z_init[(k + 1) % 3])  # random inits: each start its own
    assert [i for i, _ in frames.written] == [0, 1, 2]
    for (i, frame), step_images in zip(frames.written, images):
        assert torch.equal(frame, step_images[k:k + 1])


def test_the_images_of_one_batch_share_its_trials(story_pick, tiny_job, tiny_models):
    """The second image (rank 1) of a batch goes on from the trials the first ran, without running them again; a job
    with another seed runs its own."""
    (first, second) = story_pick[0]
    assert [e.step for e in first[3]] == [0, 1, 2] and second[3] == []  # only the first image ran the trial steps
    assert first[0].scores == second[0].scores and first[0].curve == second[0].curve
    memo, events = {"key": "another job"}, []
    cfg = job(tiny_job, **{**STORY, "seed": 4})
    run = Run(cfg, tiny_models, CPU, 4, starts=3)
    ctx = RunContext(cfg, tiny_models, CPU, 4, trial_callbacks=[lambda e: events.append(e.step)], trials=memo)
    best_of_n(ctx, run.objective, run.state)
    assert events == [0, 1, 2] and memo["key"] != "another job"


def test_each_image_of_a_batch_is_the_image_its_rank_gives_alone(tiny_job, tiny_models):
    """candidates.keep 3: the third image, going on from trials the first ran and the second went on from, ends as a
    job of that rank alone ends (nothing of the others' runs leaks into the shared trials)."""
    cfg = lambda rank: job(tiny_job, steps=4, cutouts={"n": 2}, candidates={"n": 3, "steps": 2, "views": 2,  # noqa
                                                                                "rank": rank})
    memo = {}
    batch = [generate(cfg(rank), tiny_models, trials=memo) for rank in range(3)]
    alone = generate(cfg(2), tiny_models, trials={})
    assert sorted(r.start for r in batch) == [0, 1, 2] and alone.start == batch[2].start
    assert torch.equal(batch[2].image, alone.image) and batch[2].losses == alone.losses


def test_the_starts_memory_plan_counts_all_their_cutouts(tiny_job, tiny_models, monkeypatch):
    """memory low: the objective of 3 starts of 4 cutouts scores min(12, 8) cutouts per CLIP pass (one start: 4)."""
    from vqclip.optim.objective import Objective

    made, real = [], Objective.__init__
    monkeypatch.setattr(Objective, "__init__", lambda self, *a, **k: made.append(self) or real(self, *a, **k))
    generate(job(tiny_job, steps=1, memory="low", candidates={"n": 3, "steps": 1, "views": 2}), tiny_models)
    generate(job(tiny_job, steps=1, memory="low"), tiny_models)
    assert [(o.checkpoint, o.micro_batch) for o in made] == [(True, 8), (True, 4)]


def test_the_scores_are_taken_in_the_runs_precision(tiny_job, tiny_models):
    """precision bf16: the starts are scored under bf16 autocast too (the pick a resume repeats)."""
    cfg = job(tiny_job, precision="bf16", cutouts={"n": 2}, candidates={"n": 2, "steps": 1, "views": 2})
    scored = []
    visual = tiny_models.clips[0][0].model.visual
    hook = visual.conv1.register_forward_hook(
        lambda m, i, o: None if torch.is_grad_enabled() else scored.append(o.dtype))
    try:
        run = Run(cfg, tiny_models, CPU, SEED, starts=2)
        best_of_n(RunContext(cfg, tiny_models, CPU, SEED), run.objective, run.state)
    finally:
        hook.remove()
    assert scored and set(scored) == {torch.bfloat16}


# ---- the judges ----

@pytest.fixture(scope="module")
def other_clip(tmp_path_factory):
    return load_clip(*map(str, write_clip(tmp_path_factory.mktemp("judge"), seed=9)))


def test_judges_score_with_their_own_embeddings_and_weights(tiny_job, tiny_models, other_clip):
    """candidates.clip: a judge of weight 0 neither scores nor draws views; the others' scores are weighted by their
    share of the positive weights, each on its own draw of views (in order, from the job's seed)."""
    cfg = job(tiny_job, cutouts={"n": 2}, candidates={"n": 2, "steps": 1, "views": 3})
    own = tiny_models.clips[0][0]
    models = Models(tiny_models.vqgan, tiny_models.clips, [(own, 0.0), (other_clip, 2.0)])
    run = Run(cfg, models, CPU, SEED, starts=2)
    with seeded(CPU, SEED):
        pick = best_of_n(RunContext(cfg, models, CPU, SEED), run.objective, run.state)
    hand, _ = by_hand(cfg, tiny_models, 1)
    images, views = hand.decode().detach(), views_of(other_clip, cfg)
    with seeded(CPU, SEED):
        draw = views.draw(1, 32, 32)
    expected = distances(other_clip, images, ["a red circle"], views, draw)[:, 0].tolist()
    assert pick.scores == pytest.approx(expected, rel=1e-4)
    # two judges of weights 1 and 3: a quarter of the first's score and three quarters of the second's
    with seeded(CPU, 5):
        draws = [views.draw(1, 32, 32), views.draw(1, 32, 32)]
    d1 = distances(own, images, ["a red circle"], views, draws[0])[:, 0]
    d2 = distances(other_clip, images, ["a red circle"], views, draws[1])[:, 0]
    targets = [own.encode_text(["a red circle"]), other_clip.encode_text(["a red circle"])]
    got = start_scores(images, [(own, 1.0), (other_clip, 3.0)], targets, torch.tensor([1.0]),
                       {own.image_size: views}, CPU, view_seed=5)
    assert got == pytest.approx((d1 / 4 + 3 * d2 / 4).tolist(), rel=1e-4)
