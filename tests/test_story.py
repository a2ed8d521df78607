"""A run's story targets (vqclip.modes.story): the keyframes' texts first, then the job's constant prompts; the
weights of each step on the story's time axis (steps, or a restyle's input frames through its clock)."""

import torch

from vqclip.config import merge_layers
from vqclip.modes.story import story_targets
from vqclip.optim.prompts import Prompt

CPU = torch.device("cpu")


def job(**layer):
    return merge_layers([("t", {"steps": 9, **layer})])


def test_a_plain_prompt_has_no_story():
    assert story_targets(job(prompt="a red cat", negative=["blurry"]), CPU) is None


def test_a_prompt_beside_a_story_list_pulls_throughout_after_the_keyframes_texts():
    """story: [cat at 0, dog x2 at 5] beside prompt 'a lamp:0.5', a negative and an image prompt: the targets are
    the keyframes' union, then the prompt, the negative and the image prompt, which keep their own weights."""
    cfg = job(prompt="a lamp:0.5", negative=["blurry"], image_prompts=["target.png:2"],
              story=[{"at": 0, "prompt": "a cat"}, {"at": 5, "prompt": "a dog", "weight": 2}])
    story = story_targets(cfg, CPU)
    assert story.prompts == [Prompt("a cat"), Prompt("a dog"), Prompt("a lamp", 0.5), Prompt("blurry", -1.0),
                             Prompt("target.png", 2.0, image=True)]
    for step, expected in ((0, [1, 0, 0.5, -1, 2]), (4, [1, 0, 0.5, -1, 2]), (5, [0, 2, 0.5, -1, 2]),
                           (50, [0, 2, 0.5, -1, 2])):
        weights = story.weights(step)
        assert weights.dtype == torch.float32 and weights.tolist() == expected, step
        assert story.weights.host(step) == expected, step  # the same numbers, computed on the host


def test_the_shorthand_is_the_story_not_a_constant_prompt():
    story = story_targets(job(prompt="a cat ^ a dog ^ a fish", negative=["blurry"]), CPU)
    assert [p.text for p in story.prompts] == ["a cat", "a dog", "a fish", "blurry"]
    assert [story.weights(s).tolist() for s in (0, 2, 3, 5, 6, 8)] == [
        [1, 0, 0, -1], [1, 0, 0, -1], [0, 1, 0, -1], [0, 1, 0, -1], [0, 0, 1, -1], [0, 0, 1, -1]]  # 9 steps: 0, 3, 6


def test_the_time_axis_is_the_length_and_the_clock_given():
    """A restyle's story: 'a ^ b ^ c' spread over 6 frames (keyframes at 0, 2, 4), read at the frame the clock
    gives (here step // 10), not at the step; change_every places the keyframes itself."""
    cfg = job(prompt="a ^ b ^ c")
    story = story_targets(cfg, CPU, length=6, clock=lambda step: step // 10)
    assert [story.weights(s).tolist() for s in (0, 15, 25, 39, 45)] == [
        [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert story.weights.host(25) == [0, 1, 0]
    every = story_targets(job(prompt="a ^ b ^ c", change_every=1), CPU, length=6)
    assert [k.at for k in every.schedule.keyframes] == [0, 1, 2]
