"""Prompt syntax: weighted and negative prompts, image prompts, and the errors of a malformed one."""


import pytest

from vqclip.errors import VqclipError
from vqclip.optim.prompts import Prompt, parse_image_prompt, parse_negatives, parse_prompts


def test_weighted_prompts():
    assert parse_prompts("toaster forest") == [Prompt("toaster forest", 1.0)]
    assert parse_prompts("a:1|b:-0.5| c :2e-1") == [Prompt("a", 1.0), Prompt("b", -0.5), Prompt("c", 0.2)]
    # a colon not followed by a number belongs to the text
    assert parse_prompts("photo: a cat") == [Prompt("photo: a cat", 1.0)]
    assert parse_prompts("time 12:30:2") == [Prompt("time 12:30", 2.0)]


@pytest.mark.parametrize("bad,match", [("a||b", "empty part"), ("|a", "empty part"), ("a:", "empty weight"),
                                       ("a:nan", "finite"), (":2", "no text"), ("a:inf", "finite")])
def test_bad_prompt_syntax(bad, match):
    with pytest.raises(VqclipError, match=match):
        parse_prompts(bad)


def test_negatives_and_image_prompts():
    assert parse_negatives(["blurry", "text:0.5", "x:-2"]) == [Prompt("blurry", -1.0), Prompt("text", -0.5),
                                                             Prompt("x", -2.0)]
    assert parse_image_prompt("dir/img.png:0.3") == Prompt("dir/img.png", 0.3, image=True)
    assert parse_image_prompt("C:/img.png") == Prompt("C:/img.png", 1.0, image=True)
