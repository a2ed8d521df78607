"""Prompt syntax: weighted and negative prompts, stops, image prompts, the YAML mapping form, and the errors of a
malformed one."""


import pytest

from vqclip.errors import VqclipError
from vqclip.optim.prompts import Prompt, parse_image_prompt, parse_negatives, parse_prompts, prompt_items


def test_weighted_prompts():
    assert parse_prompts("toaster forest") == [Prompt("toaster forest", 1.0)]
    assert parse_prompts("a:1|b:-0.5| c :2e-1") == [Prompt("a", 1.0), Prompt("b", -0.5), Prompt("c", 0.2)]
    # a colon not followed by a number belongs to the text
    assert parse_prompts("photo: a cat") == [Prompt("photo: a cat", 1.0)]
    assert parse_prompts("a:b:c") == [Prompt("a:b:c", 1.0)]
    # up to two numbers are read from the right, as the notebook's rsplit(':', 2): a time or ratio needs the explicit
    # ':weight:-inf' (no stop) to stay text
    assert parse_prompts("ratio 16:9") == [Prompt("ratio 16", 9.0)]
    assert parse_prompts("time 12:30:2") == [Prompt("time 12", 30.0, stop=2.0)]
    assert parse_prompts("ratio 16:9:1:-inf") == [Prompt("ratio 16:9", 1.0)]
    assert parse_prompts("photo: ratio 16:9:2:-0.25") == [Prompt("photo: ratio 16:9", 2.0, stop=-0.25)]


def test_weight_and_stop():
    assert parse_prompts("a cat:1:-0.5") == [Prompt("a cat", 1.0, stop=-0.5)]
    assert parse_prompts("a cat:1:-0.5|a dog:-2:-1.5|fur") == [Prompt("a cat", 1.0, stop=-0.5),
                                                                 Prompt("a dog", -2.0, stop=-1.5), Prompt("fur", 1.0)]
    assert parse_prompts("a cat:1: 0.25 ") == [Prompt("a cat", 1.0, stop=0.25)]
    assert parse_prompts("a cat:2:-inf") == [Prompt("a cat", 2.0)]  # the notebook's default: no stop
    assert parse_prompts("words: a cat:1:-0.5") == [Prompt("words: a cat", 1.0, stop=-0.5)]


@pytest.mark.parametrize("bad,match", [("a||b", "empty part"), ("|a", "empty part"), ("a:", "empty weight"),
                                       ("a:nan", "finite"), (":2", "no text"), ("a:inf", "finite"),
                                       ("a cat:1:", "empty stop after ':'; write 'a cat:1:-0.5'"),
                                       ("a cat::-0.5", "empty weight"), ("a cat:1:nan", "stop must be a finite"),
                                       ("a cat:1:inf", "stop must be a finite"), ("a:nan:1", "weight must be"),
                                       (":1:-0.5", "no text")])
def test_bad_prompt_syntax(bad, match):
    with pytest.raises(VqclipError, match=match):
        parse_prompts(bad)


def test_negatives_and_image_prompts():
    assert parse_negatives(["blurry", "text:0.5", "x:-2"]) == [Prompt("blurry", -1.0), Prompt("text", -0.5),
                                                             Prompt("x", -2.0)]
    assert parse_image_prompt("dir/img.png:0.3") == Prompt("dir/img.png", 0.3, image=True)
    assert parse_image_prompt("C:/img.png") == Prompt("C:/img.png", 1.0, image=True)
    assert parse_negatives(["blurry:1:-1.2", "text:-0.5:-2"]) == [Prompt("blurry", -1.0, stop=-1.2),
                                                                 Prompt("text", -0.5, stop=-2.0)]
    assert parse_image_prompt("dir/img.png:0.3:-0.5") == Prompt("dir/img.png", 0.3, image=True, stop=-0.5)
    assert parse_image_prompt("C:/img.png:2:1") == Prompt("C:/img.png", 2.0, image=True, stop=1.0)


@pytest.mark.parametrize("items", [
    [{"text": "a cat", "weight": 1, "stop": -0.5}, "a dog:-1", {"text": "fur"}],
    [{"text": "ratio 16:9", "weight": 2}, {"text": "photo: a cat", "stop": 0.125}],
    {"text": "a cat", "weight": 0.123456789, "stop": -1e-7},
])
def test_yaml_items_round_trip_through_the_string_form(items):
    """The mapping form becomes a string that parses back to exactly the prompts written (the string is what job.yaml
    and the PNG keep)."""
    listed = [items] if isinstance(items, dict) else items
    expected = [parse_prompts(i)[0] if isinstance(i, str) else
                Prompt(i["text"], float(i.get("weight", 1.0)), stop=i.get("stop")) for i in listed]
    text = prompt_items(items, "prompt")
    assert isinstance(text, str) and parse_prompts(text) == expected
    assert prompt_items(text.split("|"), "prompt") == text  # strings pass through unchanged


@pytest.mark.parametrize("items,match", [
    ([{"text": "a", "wieght": 1}], r"^prompt\[0\]: unknown key 'wieght'; did you mean 'weight'\?$"),
    (["a", {"txt": "b"}], r"^prompt\[1\]: unknown key 'txt'; did you mean 'text'\?$"),
    ([{"text": "a", "weight": "high"}], r"^prompt\[0\]\.weight: expected a number"),
    ([{"text": "a", "stop": True}], r"^prompt\[0\]\.stop: expected a number"),
    ([{"weight": 1}], r"^prompt\[0\]\.text: expected a non-empty text"),
    ([{"text": "a|b"}], r"^prompt\[0\]\.text: 'a\|b' cannot be written"),
    ([{"text": "a", "stop": float("nan")}], r"^prompt\[0\]: weight and stop must be finite"),
    ([3], r"^prompt\[0\]: expected a text or a mapping"),
])
def test_bad_yaml_items(items, match):
    with pytest.raises(VqclipError, match=match):
        prompt_items(items, "prompt")


def test_a_job_needs_a_positive_target():
    from vqclip.optim.prompts import check_has_target, parse_job_prompts

    prompts = parse_job_prompts("a cat:0.5|a dog:-1", ["blurry"], ["x.png:2"])
    assert prompts == [Prompt("a cat", 0.5), Prompt("a dog", -1.0), Prompt("blurry", -1.0),
                       Prompt("x.png", 2.0, image=True)]  # the prompt's, then the negatives, then the images
    check_has_target(prompts)
    check_has_target([Prompt("a cat", 1e-9)])
    check_has_target([Prompt("x.png", 0.1, image=True)])
    for nothing in ([], [Prompt("a cat", 0.0)], [Prompt("a cat", -1.0), Prompt("x.png", 0.0, image=True)]):
        with pytest.raises(VqclipError, match="nothing to aim at"):
            check_has_target(nothing)
    assert parse_prompts("") == parse_prompts("   ") == []


def test_the_mapping_form_reads_numbers_and_no_stop():
    assert prompt_items([{"text": " a cat ", "weight": 2, "stop": float("-inf")}], "prompt") == "a cat:2"
    assert prompt_items({"text": "a cat", "stop": -1}, "prompt") == "a cat:1:-1"
    assert parse_prompts(prompt_items([{"text": "x:1", "weight": 0.5}], "prompt")) == [Prompt("x:1", 0.5)]
