"""Story prompts: keyframes switch or blend the prompt weights at the right steps; key-framed scalars interpolate."""

import math
import re
from pathlib import Path

import pytest
import torch

from runs import Run
from vqclip.runs.pipeline import generate
from vqclip.config import merge_layers
from vqclip.files.jobyaml import load_yaml
from vqclip.errors import VqclipError
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.optim.schedules import Keyframe, PromptSchedule, parse_keyframed, split_story, story_from_shorthand, value_at

CONFIGS = Path(__file__).resolve().parents[1] / "configs"



def test_shorthand_splits_and_places_keyframes():
    assert split_story(" a red cat ^ a blue dog:2 ") == ["a red cat", "a blue dog:2"]
    assert [k.at for k in story_from_shorthand("a ^ b ^ c", 300, change_every=50)] == [0, 50, 100]
    assert [k.at for k in story_from_shorthand("a ^ b ^ c", 300, change_every=0)] == [0, 100, 200]
    with pytest.raises(VqclipError, match="empty story part"):
        split_story("a ^ ^ b")


def test_switch_holds_each_keyframe_until_the_next():
    s = PromptSchedule([Keyframe(10, "dog"), Keyframe(0, "cat:2|fur:0.5"), Keyframe(20, "cat", 3.0)], "switch")
    assert [p.text for p in s.prompts] == ["cat", "fur", "dog"]  # sorted by step, union in order of appearance
    assert s.weights_at(0) == [2.0, 0.5, 0.0]
    assert s.weights_at(9) == [2.0, 0.5, 0.0]
    assert s.weights_at(10) == [0.0, 0.0, 1.0]
    assert s.weights_at(19) == [0.0, 0.0, 1.0]
    assert s.weights_at(20) == [3.0, 0.0, 0.0]
    assert s.weights_at(10_000) == [3.0, 0.0, 0.0]
    assert s.active(15) == {"dog": 1.0}


def test_blend_moves_linearly_between_neighbours():
    s = PromptSchedule([Keyframe(0, "cat"), Keyframe(100, "dog", 2.0), Keyframe(200, "dog|blurry:-1")], "blend")
    assert s.weights_at(0) == pytest.approx([1.0, 0.0, 0.0])
    assert s.weights_at(25) == pytest.approx([0.75, 0.5, 0.0])
    assert s.weights_at(50) == pytest.approx([0.5, 1.0, 0.0])
    assert s.weights_at(150) == pytest.approx([0.0, 1.5, -0.5])
    assert s.weights_at(250) == pytest.approx([0.0, 1.0, -1.0])


@pytest.mark.parametrize("layer, words", [
    ({"story": [{"at": 0, "prompt": "a cat"}, {"at": 5, "prompt": "a dog:-1"}]}, "step 5 ('a dog:-1', weight 1)"),
    ({"story": [{"at": 0, "prompt": "a cat"}, {"at": 5, "prompt": "a dog", "weight": -1}]}, "step 5 ('a dog', weight -1)"),
    ({"story": [{"at": 0, "prompt": "a cat", "weight": 0}]}, "step 0 ('a cat', weight 0)"),
    ({"prompt": "a cat ^ a dog:-1"}, "nothing to aim at"),
    ({"story_mode": "blend", "story": [{"at": 0, "prompt": "a:1|b:-1"}, {"at": 10, "prompt": "a:-1|b:1"}]},
     "leaves nothing with a positive weight at step 5"),
])
def test_every_step_of_a_story_needs_something_to_aim_at(layer, words):
    with pytest.raises(VqclipError, match=re.escape(words)):
        merge_layers([("job", {"steps": 10, **layer})])


def test_a_prompt_beside_the_story_covers_its_steps():
    for layer in ({"prompt": "a lamp"}, {"image_prompts": ["x.png"]}):  # pull throughout: a keyframe may push only
        cfg = merge_layers([("job", {"story": [{"at": 0, "prompt": "a cat"}, {"at": 5, "prompt": "a dog:-1"}],
                                     **layer})])
        assert len(cfg.story) == 2
    merge_layers([("job", {"story_mode": "blend", "story": [{"at": 0, "prompt": "a:1|b:-1"},
                                                            {"at": 10, "prompt": "a:0.5|b:1"}]})])  # a stays > 0


def test_the_loss_at_a_story_step_is_the_loss_of_that_steps_prompt(tiny_job, tiny_models):
    """The story's weight schedule is what the loss uses: at a step of part 'b', the CLIP term of 'a ^ b' equals the
    CLIP term of a plain run of 'b' on the same image and the same views."""
    cpu = torch.device("cpu")
    over = {"steps": 10, "seed": 3, "negative": ["blurry"]}
    story = Run(merge_layers([("tiny", tiny_job), ("t", {"prompt": "a red cat ^ a blue dog", **over})]),
                            tiny_models, cpu, 3)
    plain = Run(merge_layers([("tiny", tiny_job), ("t", {"prompt": "a blue dog", **over})]),
                            tiny_models, cpu, 3)
    clip = tiny_models.clips[0][0]
    image = story.decode().detach()
    views = [story.cutouts[clip.image_size].draw(1, *image.shape[-2:], torch.Generator().manual_seed(0))]
    for step, same in ((7, True), (2, False)):
        story.step_count = plain.step_count = step
        a, b = story.losses(image, views)[story.clip_terms[0]], plain.losses(image, views)[plain.clip_terms[0]]
        assert torch.isclose(a, b, rtol=1e-6) == same, step


def test_keyframe_errors_are_one_line():
    with pytest.raises(VqclipError, match="two keyframes at step 5"):
        PromptSchedule([Keyframe(5, "a"), Keyframe(5, "b")])
    with pytest.raises(VqclipError, match="negative"):
        PromptSchedule([Keyframe(-1, "a")])
    with pytest.raises(VqclipError, match="story_mode"):
        PromptSchedule([Keyframe(0, "a")], "fade")


def test_keyframed_values_parse_every_form_and_interpolate():
    assert parse_keyframed(1.05, "z") == [(0.0, 1.05)]
    assert parse_keyframed({100: 2.0, 0: 1.0}, "z") == [(0.0, 1.0), (100.0, 2.0)]
    assert parse_keyframed([[0, 1], {"at": 10, "value": 3}], "z") == [(0.0, 1.0), (10.0, 3.0)]
    keys = parse_keyframed("0:(1.0), 50: 2.0, 100:0", "z")
    assert keys == [(0.0, 1.0), (50.0, 2.0), (100.0, 0.0)]
    assert [value_at(keys, s) for s in (-5, 0, 25, 50, 75, 100, 500)] == [1.0, 1.0, 1.5, 2.0, 1.0, 0.0, 0.0]
    for bad in ("0:1, 0:2", "fast", {0: "x"}, True, [[1, 2, 3]], float("nan"), float("inf")):
        with pytest.raises(VqclipError, match="animation.zoom"):
            parse_keyframed(bad, "animation.zoom")


def test_config_validates_story_settings():
    base = [("t", {"prompt": "a ^ b"})]
    assert merge_layers(base + [("u", {"story_mode": "blend", "change_every": 5})]).change_every == 5
    with pytest.raises(VqclipError, match="story_mode"):
        merge_layers(base + [("u", {"story_mode": "fade"})])
    with pytest.raises(VqclipError, match="not both"):
        merge_layers(base + [("u", {"story": [{"at": 0, "prompt": "c"}]})])
    with pytest.raises(VqclipError, match="unknown key 'story\\[0\\].when'|unknown key 'when'"):
        merge_layers([("u", {"story": [{"when": 0, "prompt": "c"}]})])
    with pytest.raises(VqclipError, match="two keyframes"):
        merge_layers([("u", {"story": [{"at": 3, "prompt": "c"}, {"at": 3, "prompt": "d"}]})])


def test_generation_uses_the_scheduled_weights_at_each_step(tiny_job, tiny_models, monkeypatch):
    """A real run: the weights the loss uses switch (shorthand) or blend (story list) at the asserted steps."""
    from vqclip.optim.objective import Objective

    seen: dict[int, list[float]] = {}
    real = Objective.weights_at

    def spy(self, step):  # what the loss asks for at each step
        weights = real(self, step)
        seen[step] = weights.tolist()
        return weights

    monkeypatch.setattr(Objective, "weights_at", spy)

    cfg = merge_layers([("tiny", tiny_job), ("t", {"prompt": "a red cat ^ a blue dog", "change_every": 3,
                                                   "negative": ["blurry"], "steps": 6, "seed": 3})])
    result = generate(cfg, tiny_models, [], torch.device("cpu"))
    assert result.steps == 6
    assert seen[0] == seen[2] == [1.0, 0.0, -1.0]  # cat, dog, negative "blurry" throughout
    assert seen[3] == seen[5] == [0.0, 1.0, -1.0]

    seen.clear()
    cfg = merge_layers([("tiny", tiny_job), ("t", {"story": [{"at": 0, "prompt": "cat"},
                                                             {"at": 4, "prompt": "dog", "weight": 2}],
                                                   "story_mode": "blend", "steps": 6, "seed": 3})])
    gen = Run(cfg, tiny_models, torch.device("cpu"), 3)
    assert [p.text for p in gen.prompts] == ["cat", "dog"]
    generate(cfg, tiny_models, [], torch.device("cpu"))
    assert seen[1] == pytest.approx([0.75, 0.5])
    assert seen[2] == pytest.approx([0.5, 1.0])
    assert seen[5] == pytest.approx([0.0, 2.0])


def test_story_changes_the_image_but_stays_reproducible(tiny_job, tiny_models):
    """Switching to another prompt changes what is optimised; the same story and seed give the same image."""
    over = {"steps": 6, "seed": 5, "optimizer": {"lr": 0.3}}
    story = merge_layers([("tiny", tiny_job), ("t", {"prompt": "a red cat ^ a blue dog", "change_every": 2, **over})])
    plain = merge_layers([("tiny", tiny_job), ("t", {"prompt": "a red cat", **over})])
    cpu = torch.device("cpu")
    a, b = generate(story, tiny_models, [], cpu), generate(story, tiny_models, [], cpu)
    c = generate(plain, tiny_models, [], cpu)
    assert torch.equal(a.image, b.image)
    assert not torch.equal(a.image, c.image)


def test_story_config_runs(tiny_job, tmp_path):
    """configs/story.yaml (model: mini) runs with the tiny models swapped in, via the job runner."""
    job = load_yaml(CONFIGS / "story.yaml")
    assert job.pop("model") == "mini" and job["story"]
    job.update({k: v for k, v in tiny_job.items() if k != "output"})
    cfg = build_config({"steps": 6, "seed": 1, "output": {"dir": str(tmp_path / "run"), "save_every": 2}},
                       base=[("configs/story.yaml", job)])
    assert [k.at for k in cfg.story] == sorted(k.at for k in cfg.story)
    run = run_job(cfg)
    assert run.final.is_file() and run.video.is_file() and len(run.frames) == 4
    assert (run.dir / "state.pt").is_file()


def test_keyframe_stops_are_kept_per_text_and_stop():
    """A keyframe's 'text:w:stop' keeps its stop on the story's target; the same text with another stop is a target
    of its own (each keyframe's stop is what it asked for), with its weight in its own keyframe only."""
    from vqclip.optim.prompts import Prompt

    s = PromptSchedule([Keyframe(0, "a cat:1:-0.5|fur"), Keyframe(10, "a cat:2:0.5|fur:1")])
    assert s.prompts == [Prompt("a cat", stop=-0.5), Prompt("fur"), Prompt("a cat", stop=0.5)]
    assert s.weights_at(0) == [1.0, 1.0, 0.0] and s.weights_at(10) == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("schedule, curve", [
    ("constant", lambda t: 1.0),
    ("linear", lambda t: 1 - 0.8 * t),  # to min_factor 0.2 at the last step
    ("cosine", lambda t: 0.2 + 0.8 * (1 + math.cos(math.pi * t)) / 2)])
def test_lr_at_the_start_the_middle_the_end_and_after_it(schedule, curve):
    """lr x curve(step / steps), held at lr x min_factor from the last step on."""
    from vqclip.optim.schedules import learning_rate

    for step, t in ((0, 0.0), (5, 0.25), (10, 0.5), (19, 0.95), (20, 1.0), (21, 1.0), (400, 1.0)):
        assert learning_rate(schedule, 0.5, 0.2, step, 20) == pytest.approx(0.5 * curve(t), rel=1e-12), (step, t)
    assert learning_rate(schedule, 0.5, 0.2, 0, 0) == pytest.approx(0.5 * curve(0.0))  # zero steps: no division
    with pytest.raises(VqclipError, match="optimizer.schedule: unknown value 'step'; use one of constant, cosine"):
        learning_rate("step", 0.5, 0.2, 0, 20)


def test_before_the_first_keyframe_it_holds_and_keyframe_weights_scale_their_prompts():
    s = PromptSchedule([Keyframe(5, "cat:2|fur", 0.5), Keyframe(9, "dog")], "blend")
    assert s.weights_at(0) == s.weights_at(5) == [1.0, 0.5, 0.0]
    assert s.weights_at(7) == pytest.approx([0.5, 0.25, 0.5])


def test_a_jobs_keyframes_and_texts():
    """A story list's keyframes as written; the '^' parts spread over steps or every change_every; none for a plain
    prompt. job_texts: every text CLIP embeds (story parts, keyframes, a prompt beside them, negatives), not images."""
    from types import SimpleNamespace

    from vqclip.optim.schedules import job_texts, story_keyframes

    story = [SimpleNamespace(at=4, prompt="a dog", weight=2), SimpleNamespace(at=0, prompt="a cat|fur:0.5", weight=1)]
    assert story_keyframes("a lamp", story, 10, 0) == [Keyframe(4, "a dog", 2.0), Keyframe(0, "a cat|fur:0.5", 1.0)]
    assert story_keyframes("a ^ b", [], 10, 0) == [Keyframe(0, "a"), Keyframe(5, "b")]
    assert story_keyframes("a ^ b", [], 10, 3) == [Keyframe(0, "a"), Keyframe(3, "b")]
    assert story_keyframes("a lamp", [], 10, 3) == []
    job = SimpleNamespace(prompt="a lamp:2", story=story, steps=10, change_every=0, negative=["blurry:-1"],
                          image_prompts=["x.png"])
    assert job_texts(job) == ["a dog", "a cat", "fur", "a lamp", "blurry"]
    shorthand = SimpleNamespace(prompt="a ^ b:2", story=[], steps=0, change_every=0, negative=[], image_prompts=[])
    assert job_texts(shorthand) == ["a", "b"]


@pytest.mark.parametrize("parts, steps", [(2, 1), (3, 2), (5, 4)])
def test_a_shorthand_story_needs_a_step_for_each_part(parts, steps):
    """'a ^ b ^ c' spread over 2 steps would put two parts on one step: an error saying so (not 'two keyframes at step
    1', keyframes the user never wrote); as many steps as parts is enough."""
    prompt = " ^ ".join("abcde"[:parts])
    with pytest.raises(VqclipError, match=rf"^prompt '{re.escape(prompt)}' has {parts} story parts but {steps} steps? "
                                          rf"to spread them over; give at least {parts} steps or set change_every$"):
        merge_layers([("job", {"prompt": prompt, "steps": steps})])
    assert [k.at for k in story_from_shorthand(prompt, parts)] == list(range(parts))
    assert len(story_from_shorthand(prompt, steps, change_every=1)) == parts  # change_every places them itself


def test_a_keyframe_needs_a_prompt_and_a_finite_weight_and_a_keyframed_value_a_value():
    with pytest.raises(VqclipError, match="the keyframe at step 3 has no prompt"):
        PromptSchedule([Keyframe(0, "a"), Keyframe(3, "  ")])
    with pytest.raises(VqclipError, match="the keyframe at step 0 has a non-finite weight"):
        PromptSchedule([Keyframe(0, "a", math.inf)])
    with pytest.raises(VqclipError, match="animation.zoom: expected a number.*got nothing"):
        parse_keyframed(" , ", "animation.zoom")
    with pytest.raises(VqclipError, match=r"zoom: keyframe steps must be >= 0 and each given once, got \[-1.0"):
        parse_keyframed({-1: 1.0, 5: 2.0}, "animation.zoom")
    assert parse_keyframed({0: 1.0}, "z") == [(0.0, 1.0)]  # step 0, the first allowed
