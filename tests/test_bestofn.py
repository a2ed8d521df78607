"""Best-of-n starts: the seeds, the pick (the lowest score wins and goes on), the scoring models, the config."""

import numpy as np
import pytest
import torch
from PIL import Image

from tiny import write_clip
from vqclip.modes.base import RunContext
from vqclip.modes.bestofn import best_of_n, start_scores
from vqclip.cli import main
from vqclip.config import merge_layers
from vqclip.optim.cutouts import Cutouts
from vqclip.errors import VqclipError
from runs import Run, Sink
from vqclip.nets.load import Models
from vqclip.runs.pipeline import generate
from vqclip.nets.device import seeded
from vqclip.nets.clip import load_clip


def job(tiny_job, **over):
    return merge_layers([("tiny", tiny_job), ("test", {"prompt": "a red circle", "steps": 6, "seed": 3, **over})])


def best_start(cfg, models, device, seed, callbacks=(), frames=None, frame_every=0):
    """The trials of best of n on a run of `cfg.candidates.n` starts, as the still mode runs them: (the run gone on
    with the best start, every start's score)."""
    run = Run(cfg, models, device, seed, starts=cfg.candidates.n)
    ctx = RunContext(cfg, models, device, seed, trial_callbacks=list(callbacks), frames=frames)
    pick = best_of_n(ctx, run.objective, run.state, frame_every)
    return run, pick.scores


def test_each_start_of_a_batch_moves_as_it_would_alone(tiny_job, tiny_models):
    """Starts run as one batch, but each gets the update it would get alone (with SGD, where the loss scale shows):
    with deterministic views (whole image, no augments), the batch's rows equal solo runs from the same latents."""
    cfg = job(tiny_job, init={"kind": "random"}, optimizer={"name": "sgd", "lr": 0.5}, tv_weight=0.3,
              cutouts={"n": 2, "min_size": 1.0, "augments": []}, candidates={"n": 3, "steps": 3})
    device = torch.device("cpu")
    batch = Run(cfg, tiny_models, device, 3, starts=3)
    assert batch.z.shape[0] == 3 and len({tuple(row.flatten().tolist()) for row in batch.z}) == 3  # own codes
    rows = batch.z.detach().clone()
    for _ in range(3):
        assert batch.step().image.shape[0] == 3
    for k in range(3):
        alone = Run(cfg, tiny_models, device, 3)
        alone.state.move_to(rows[k:k + 1])
        for _ in range(3):
            alone.step()
        assert torch.allclose(alone.z, batch.z[k:k + 1], atol=1e-5)
    assert not torch.allclose(batch.z[0], rows[0])  # they did move


def test_keep_goes_on_with_one_start_and_its_optimizer_state(tiny_job, tiny_models):
    cfg = job(tiny_job, init={"kind": "random"})
    gen = Run(cfg, tiny_models, torch.device("cpu"), 3, starts=3)
    gen.step()
    z, moments = gen.z.detach().clone(), gen.optimizer.state[gen.z]["exp_avg"].clone()
    gen.keep(1)
    assert gen.start == 1 and gen.starts == 1 and torch.equal(gen.z, z[1:2]) and gen.z.requires_grad
    assert torch.equal(gen.optimizer.state[gen.z]["exp_avg"], moments[1:2])
    assert gen.step().image.shape[0] == 1 and gen.step_count == 2


def test_best_start_goes_on_from_the_lowest_scored_start(tiny_job, tiny_models):
    cfg = job(tiny_job, candidates={"n": 3, "steps": 2, "views": 4})
    device = torch.device("cpu")
    with seeded(device, 3):
        winner, scores = best_start(cfg, tiny_models, device, 3)
    assert len(scores) == 3 and len(set(scores)) == 3
    assert winner.step_count == 2 and winner.seed == 3 and winner.start == int(np.argmin(scores))
    # the winner is that row of the same batch run by hand, and its score is what was reported
    with seeded(device, 3):
        batch = Run(cfg, tiny_models, device, 3, starts=3)
        for _ in range(2):
            batch.step()
    assert torch.equal(batch.z[winner.start:winner.start + 1], winner.z)
    clip, c = tiny_models.clips[0][0], cfg.cutouts
    views = {clip.image_size: Cutouts(clip.image_size, 4, c.pow, c.min_size, c.augments, c.noise)}
    again = start_scores(winner.decode().detach(), tiny_models.clips, batch.targets, batch.weights, views, device,
                         view_seed=3)[0]
    assert again == pytest.approx(min(scores), rel=1e-5)


def _views(clip, cfg, n):
    c = cfg.cutouts
    return {clip.image_size: Cutouts(clip.image_size, n, c.pow, c.min_size, c.augments, c.noise)}


def test_every_start_is_scored_on_the_same_views(tiny_job, tiny_models):
    """The same image as two starts scores the same; the views are one draw replayed, not one draw per start."""
    cfg, device = job(tiny_job), torch.device("cpu")
    clip = tiny_models.clips[0][0]
    gen = Run(cfg, tiny_models, device, 3, starts=2)
    a, b = gen.decode().detach().split(1)
    scores = start_scores(torch.cat([a, b, a, b]), tiny_models.clips, gen.targets, gen.weights, _views(clip, cfg, 6),
                          device, view_seed=5)
    assert scores[0] == scores[2] and scores[1] == scores[3] and scores[0] != scores[1]


def test_a_starts_score_is_its_mean_spherical_distance_on_the_views(tiny_job, tiny_models):
    """Independently of vqclip's loss code: the score is the mean over the views of arccos(cos)^2 / 2 to the prompt
    (weight 1), on the views the replayed draw gives."""
    cfg, device = job(tiny_job), torch.device("cpu")
    clip = tiny_models.clips[0][0]
    gen = Run(cfg, tiny_models, device, 3)
    image, views = gen.decode().detach(), _views(clip, cfg, 5)
    with seeded(device, 9):
        draw = views[clip.image_size].draw(1, 32, 32)
    cosine = clip.encode_image(views[clip.image_size].apply(image, draw)) @ clip.encode_text(["a red circle"]).T
    expected = (cosine.clamp(-1, 1).arccos() ** 2 / 2).mean().item()
    got = start_scores(image, tiny_models.clips, gen.targets, gen.weights, views, device, view_seed=9)[0]
    assert got == pytest.approx(expected, rel=1e-4)


def test_the_pick_is_the_start_with_the_lowest_independent_score(tiny_job, tiny_models):
    cfg = job(tiny_job, candidates={"n": 4, "steps": 2, "views": 6})
    device, clip = torch.device("cpu"), tiny_models.clips[0][0]
    with seeded(device, 3):
        winner, _ = best_start(cfg, tiny_models, device, 3)
    with seeded(device, 3):  # the same four starts, run by hand to the pick
        trial = Run(cfg, tiny_models, device, 3, starts=4)
        for _ in range(2):
            trial.step()
    finals = trial.decode().detach()
    text = clip.encode_text(["a red circle"])
    views = _views(clip, cfg, 6)[clip.image_size]
    with seeded(device, 3):
        draw = views.draw(1, 32, 32)
    independent = [(clip.encode_image(views.apply(finals[k:k + 1], draw)) @ text.T).clamp(-1, 1).arccos().pow(2)
                   .mean().item() for k in range(4)]
    assert winner.start == int(np.argmin(independent)) and len(set(independent)) == 4


def test_generate_with_candidates_is_repeatable_and_n1_is_the_plain_run(tiny_job, tiny_models):
    a = generate(job(tiny_job, candidates={"n": 3, "steps": 2, "views": 4}), tiny_models)
    b = generate(job(tiny_job, candidates={"n": 3, "steps": 2, "views": 4}), tiny_models)
    assert torch.equal(a.image, b.image) and a.seed == b.seed == 3 and a.steps == 6
    plain = generate(job(tiny_job), tiny_models)
    one = generate(job(tiny_job, candidates={"n": 1, "steps": 2}), tiny_models)
    assert torch.equal(plain.image, one.image)


def test_scoring_models_are_the_judges_when_given(tiny_job, tiny_models, tmp_path):
    cfg = job(tiny_job, candidates={"n": 2, "steps": 1, "views": 4})
    other = load_clip(*map(str, write_clip(tmp_path, seed=9)))
    device = torch.device("cpu")
    own = best_start(cfg, tiny_models, device, 3)[1]
    judged = best_start(cfg, Models(tiny_models.vqgan, tiny_models.clips, [(other, 1.0)]), device, 3)[1]
    assert own != pytest.approx(judged)  # the same two starts, scored by another CLIP


def test_config_checks_and_shorthand(tiny_job):
    cfg = job(tiny_job, candidates={"n": 2, "clip": "ViT-B-32"})
    assert cfg.candidates.clip[0].model == "ViT-B-32" and cfg.candidates.clip[0].weight == 1.0
    for bad, words in [({"n": 0}, "n, steps and views"), ({"views": 0}, "n, steps and views"),
                       ({"n": 2, "clip": [{"model": "x", "weight": 0}]}, "positive weight")]:
        with pytest.raises(VqclipError, match=words):
            job(tiny_job, candidates=bad)
    with pytest.raises(VqclipError, match="animation.mode: zoom"):
        job(tiny_job, candidates={"n": 2}, animation={"mode": "zoom"})
    with pytest.raises(VqclipError, match=r"candidates.clip\[0\]: expected a mapping"):
        job(tiny_job, candidates={"n": 2, "clip": [5]})
    with pytest.raises(VqclipError, match="unknown key 'candidates.runs'"):
        job(tiny_job, candidates={"runs": 2})


def test_cli_run_with_candidates_keeps_the_chosen_starts_frames(tmp_path, tiny_args):
    out = tmp_path / "run"
    code = main(["generate", "a red circle", *tiny_args, "--steps", "6", "--save-every", "2", "--seed", "4",
                 "--out", str(out), "--candidates", "2", "--set", "candidates.steps=3", "--no-video"])
    assert code == 0
    frames = sorted(p.name for p in (out / "frames").iterdir())
    assert frames == ["000000.png", "000002.png", "000004.png", "000006.png"]  # the chosen start's trial frames too
    again = tmp_path / "again"
    assert main(["generate", "--from", str(out / "final.png"), "--out", str(again), "--quiet"]) == 0
    a, b = (np.asarray(Image.open(d / "final.png").convert("RGB")) for d in (out, again))
    assert np.array_equal(a, b)  # the PNG's config repeats the pick


def test_a_stop_during_the_trials_ends_the_run_there_with_the_trial_frames(tiny_job, tiny_models):
    """Ctrl-C (any stopping callback that sees the trials) during the trials: the best start tried so far is the
    result, the run takes no step of its own, its frames and losses are those of the trial steps; callbacks that did
    not ask for the trials see none of them."""
    from vqclip.runs.callbacks import StopAfter, with_trials

    events, plain, frames = [], [], Sink()
    record = with_trials(lambda e: events.append((e.trial, e.step)))
    cfg = job(tiny_job, steps=20, candidates={"n": 3, "steps": 5, "views": 4}, output={"save_every": 1})
    result = generate(cfg, tiny_models, [record, plain.append, StopAfter(3)], frames=frames)
    assert events == [(3, s) for s in range(3)]  # three trial steps of the 3 starts, none of the run itself
    assert plain == []  # an ordinary callback sees only the run's own steps
    assert result.stopped and result.steps == 3 and len(result.losses) == 3  # the trial steps' losses
    assert [i for i, _ in frames.written] == [0, 1, 2]
    once = iter([True])  # a callback that asks to stop once is obeyed too
    one = generate(cfg, tiny_models, [with_trials(lambda e: next(once, False))])
    assert one.stopped and one.steps == 1


def test_a_job_stopped_during_the_trials_writes_its_result_and_resumes_as_if_never_stopped(tiny_job, tmp_path):
    """The job runner's Ctrl-C flag reaches the trials. A pick cut short leaves every start in state.pt, so `resume`
    goes on with the trials and ends with the image of an uninterrupted run."""
    import threading

    from vqclip.runs.pipeline import run_job
    from vqclip.runs.resume import resume_run, state_path
    from vqclip.runs.statefile import load_state

    flag = threading.Event()
    flag.set()
    over = {"steps": 8, "candidates": {"n": 3, "steps": 3, "views": 4}, "seed": 5}
    out = lambda name: {"dir": str(tmp_path / name), "save_every": 1, "video": False}  # noqa: E731
    run = run_job(job(tiny_job, **over, output=out("run")), stop=flag)
    assert run.interrupted and run.result.steps == 1  # one trial step of the starts, and no step of the run
    assert [p.name for p in run.frames] == ["000000.png", "000001.png"] and run.final.is_file()
    saved = load_state(state_path(run.dir))
    assert saved["step"] == 1 and saved["z"].shape[0] == 3  # the three starts, one trial step on
    again = resume_run(run.dir)
    whole = run_job(job(tiny_job, **over, output=out("whole")))
    assert again.result.steps == 8 and torch.equal(again.result.image, whole.result.image)


def test_progress_counts_the_trial_steps_once_and_names_the_starts(tiny_job, capsys):
    from vqclip.runs.callbacks import ProgressBar
    from vqclip.optim.loop import StepEvent

    bar, seen = ProgressBar(20), []
    for trial in [3] * 5 + [0] * 15:
        bar(StepEvent(0, 20, 1.0, {}, torch.zeros(1, 3, 8, 8), trial=trial))
        seen.append(bar.bar.desc.removesuffix(": "))  # tqdm stores a set description with ": "
    assert bar.bar.n == bar.bar.total == 20
    assert seen[0] == "generate (3 starts)" and seen[4] == "generate (3 starts)" and seen[-1] == "generate"
    bar.close()


def test_job_and_resume_bars_count_the_trials(tiny_job, tmp_path, capsys):
    from vqclip.runs.pipeline import run_job
    from vqclip.runs.resume import resume_run, state_path

    cfg = job(tiny_job, steps=6, candidates={"n": 3, "steps": 2, "views": 4},
              output={"dir": str(tmp_path / "run"), "video": False, "progress": True})
    run = run_job(cfg)
    err = capsys.readouterr().err
    assert "6/6" in err and "7/6" not in err  # the 2 trial steps are the run's first 2
    state_path(run.dir).unlink()  # killed before its first state save: resume starts over, trials and all
    resume_run(run.dir, overrides={"output": {"progress": True}})
    err = capsys.readouterr().err
    assert "6/6" in err and "7/6" not in err


def test_frames_of_the_trials_are_the_starts_ranked_to_go_on(tiny_job, tiny_models):
    """At each frame step of the trials, the start ranked to go on then (the event's `best`) is written, in step
    order, before the chosen start's own frames."""
    from vqclip.runs.callbacks import with_trials

    frames, seen = Sink(), {}
    cfg = job(tiny_job, steps=7, candidates={"n": 3, "steps": 4, "views": 4}, output={"save_every": 2})
    result = generate(cfg, tiny_models, [with_trials(lambda e: seen.__setitem__(e.step, (e.image, e.best)))],
                      frames=frames)
    assert [i for i, _ in frames.written] == [0, 2, 4, 6]
    assert all(seen[i][0].shape[0] == 3 for i in (0, 2)) and all(seen[i][0].shape[0] == 1 for i in (4, 6))
    for i, image in frames.written:  # the leading start's image in the trials, then the chosen start's own
        shown, best = seen[i]
        assert torch.equal(image, shown[best:best + 1] if i < 4 else shown)
    shown, best = seen[0]
    assert not torch.equal(frames.written[0][1], shown[(best + 1) % 3:][:1])  # another start differs


def test_a_run_resumed_after_the_pick_ends_as_an_uninterrupted_one(tiny_job, tmp_path, monkeypatch):
    """The chosen start goes on alone in the precision the batch chose (auto: bf16 here for 16 starts of 32 x 32 on
    a CPU with native bf16), and so does a resume of it: stopping after the pick changes nothing."""
    from vqclip.runs.pipeline import run_job
    from vqclip.runs.resume import resume_run

    monkeypatch.setattr("vqclip.nets.device.cpu_native_bf16", lambda: True)
    over = {"candidates": {"n": 16, "steps": 2, "views": 2}, "seed": 4, "precision": "auto"}
    out = lambda name: {"dir": str(tmp_path / name), "save_every": 0, "video": False}  # noqa: E731
    first = run_job(job(tiny_job, **over, steps=4, output=out("run")))
    again = resume_run(first.dir, overrides={"steps": 6})
    whole = run_job(job(tiny_job, **over, steps=6, output=out("whole")))
    assert again.result.steps == whole.result.steps == 6
    assert torch.equal(again.result.image, whole.result.image)
    assert not torch.equal(first.result.image, whole.result.image)
