"""Region prompts' syntax and masks: 'text:weight:stop@region', the YAML `mask:` key, the named regions as areas of the
canvas (each pixel's share inside the box, counted here pixel by pixel), mask images, and bad input in one line."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.optim.prompts import Prompt, format_prompt, parse_negatives, parse_prompts, prompt_items
from vqclip.optim.regions import check_region, named_mask, read_mask, region_mask
from vqclip.optim.schedules import Keyframe, PromptSchedule


def test_the_region_comes_after_the_weight_and_stop():
    got = parse_prompts("a red square:2@left|a green circle:1:-0.5@right|a sky@center|a dog@masks/dog.PNG|plain")
    assert got == [Prompt("a red square", 2.0, region="left"), Prompt("a green circle", 1.0, stop=-0.5, region="right"),
                   Prompt("a sky", region="centre"), Prompt("a dog", region="masks/dog.PNG"), Prompt("plain")]
    assert parse_negatives(["blurry:0.5@border"]) == [Prompt("blurry", -0.5, region="border")]


@pytest.mark.parametrize("text", ["me @ home", "an @ sign:2", "user@host:1", "a@b c"])
def test_an_at_sign_that_names_no_region_stays_in_the_text(text):
    want = text.rpartition(":")[0] if text.endswith(":1") or text.endswith(":2") else text
    (p,) = parse_prompts(text)
    assert p.text == want and p.region is None


@pytest.mark.parametrize("bad, match", [("a cat@lfet", "unknown region 'lfet'; did you mean 'left'"),
                                        ("a cat@home", "unknown region 'home'"),
                                        ("a cat@", "nothing after '@'"),
                                        ("a cat@left:1", "the region goes last; write 'a cat:1@left'"),
                                        ("a cat@mask.txt", "unknown region 'mask.txt'")])
def test_bad_regions_are_one_line_naming_them(bad, match):
    with pytest.raises(VqclipError, match=match):
        parse_prompts(bad)


def test_yaml_mask_round_trips_through_the_string_form():
    items = [{"text": "a red square", "mask": "left"}, {"text": "x:1", "weight": 2, "stop": -1, "mask": "m.png"},
             {"text": "user@host"}, "a dog:1@top"]
    spec = prompt_items(items, "prompt")
    assert spec == "a red square:1@left|x:1:2:-1@m.png|user@host:1|a dog:1@top"
    assert parse_prompts(spec) == [Prompt("a red square", region="left"), Prompt("x:1", 2.0, stop=-1.0,
                                                                                 region="m.png"),
                                   Prompt("user@host"), Prompt("a dog", region="top")]
    assert format_prompt(Prompt("a:2", region="bottom")) == "a:2:1:-inf@bottom"
    assert parse_prompts(format_prompt(Prompt("a:2", region="bottom"))) == [Prompt("a:2", region="bottom")]


@pytest.mark.parametrize("mask, match", [("lft", "unknown region 'lft'"), (3, "expected a region name"),
                                         ("", "expected a region name"),
                                         ("my mask.png", "expected a region name.*without spaces")])
def test_bad_yaml_masks(mask, match):
    with pytest.raises(VqclipError, match=r"prompt\[0\]\.mask: " + match):
        prompt_items([{"text": "a", "mask": mask}], "prompt")


def test_check_region_names_and_paths():
    assert [check_region(n, None) for n in ("left", "center", "border", "a.jpeg", "x", "left.txt")] == \
        ["left", "centre", "border", "a.jpeg", None, None]


def count(width, height, inside):
    """Each pixel's share of area inside a box, by sampling 8 x 8 points per pixel (exact for the boxes at quarters
    of an even multiple of 8 grid: the boundaries fall on sample-cell edges)."""
    ys, xs = (np.arange(height * 8) + 0.5) / 8, (np.arange(width * 8) + 0.5) / 8
    hit = inside(xs[None, :] / width, ys[:, None] / height)
    return hit.reshape(height, 8, width, 8).mean((1, 3))


@pytest.mark.parametrize("width, height", [(5, 7), (8, 4), (1, 3), (6, 6)])
def test_named_regions_are_their_share_of_each_pixel(width, height):
    boxes = {"left": lambda x, y: x < 0.5, "right": lambda x, y: x >= 0.5, "top": lambda x, y: y < 0.5 + 0 * x,
             "bottom": lambda x, y: (y >= 0.5) + 0 * x,
             "centre": lambda x, y: (x >= 0.25) & (x < 0.75) & (y >= 0.25) & (y < 0.75)}
    boxes["border"] = lambda x, y: ~boxes["centre"](x, y)
    for name, inside in boxes.items():
        want = count(width, height, lambda x, y: np.broadcast_to(inside(x, y), (len(y), x.shape[1])))
        np.testing.assert_allclose(named_mask(name, width, height), want, atol=1e-12, err_msg=name)
    assert named_mask("left", width, height).sum() == pytest.approx(width * height / 2)
    assert named_mask("centre", width, height).sum() == pytest.approx(width * height / 4)


def test_a_mask_image_is_grey_over_255_resized_with_a_notice(tmp_path, caplog):
    grey = np.zeros((4, 6), np.uint8)
    grey[:, :3] = 255
    grey[0, 5] = 51
    Image.fromarray(grey).convert("RGB").save(tmp_path / "m.png")
    np.testing.assert_allclose(read_mask(str(tmp_path / "m.png")), grey / 255)
    np.testing.assert_allclose(region_mask(str(tmp_path / "m.png"), 6, 4), grey / 255)
    with caplog.at_level(logging.INFO, logger="vqclip"):
        big = region_mask(str(tmp_path / "m.png"), 12, 8)
    assert big.shape == (8, 12) and "resized to the image's 12x8" in caplog.text
    want = np.asarray(Image.fromarray(grey).resize((12, 8), Image.Resampling.BILINEAR)) / 255
    np.testing.assert_allclose(big, want)


def test_bad_mask_files_are_one_line(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    Image.new("L", (4, 4), 0).save(tmp_path / "black.png")
    Image.new("L", (4, 4), 1).save(tmp_path / "almost.png")
    with pytest.raises(VqclipError, match="text.png' is not an image"):
        read_mask(str(tmp_path / "text.png"))
    with pytest.raises(VqclipError, match="all black: the prompt would pull nowhere"):
        read_mask(str(tmp_path / "black.png"))
    with pytest.raises(VqclipError, match="no such file"):
        read_mask(str(tmp_path / "none.png"))
    assert read_mask(str(tmp_path / "almost.png")).max() == pytest.approx(1 / 255)  # the faintest grey is inside
    deep = tmp_path.joinpath(*["a-long-folder-name"] * 5)  # the messages name a mask deep in folders whole
    deep.mkdir(parents=True)
    for name in ("text.png", "black.png"):
        (deep / name).write_bytes((tmp_path / name).read_bytes())
    for name in ("text.png", "black.png", "none.png"):
        with pytest.raises(VqclipError) as info:
            read_mask(str(deep / name))
        assert f"region mask '{deep / name}'" in str(info.value)


def test_a_story_keeps_one_text_in_two_regions_apart():
    s = PromptSchedule([Keyframe(0, "a cat@left|a cat"), Keyframe(5, "a cat:2@right")])
    assert s.prompts == [Prompt("a cat", region="left"), Prompt("a cat"), Prompt("a cat", region="right")]
    assert s.weights_at(0) == [1.0, 1.0, 0.0] and s.weights_at(5) == [0.0, 0.0, 2.0]


@pytest.mark.parametrize("case", ["unknown name", "not an image", "all black", "missing mask", "tile", "story"])
def test_bad_region_input_is_one_line_and_exit_2(tmp_path, tiny_args, capsys, case):
    (tmp_path / "text.png").write_text("not an image")
    Image.new("L", (4, 4), 0).save(tmp_path / "black.png")
    argv, expected = {"unknown name": (["a cat:1@lefft"], "unknown region 'lefft'; did you mean 'left'"),
                      "not an image": ([f"a cat@{tmp_path / 'text.png'}"], "text.png' is not an image"),
                      "all black": ([f"a cat@{tmp_path / 'black.png'}"], "is all black"),
                      "missing mask": ([f"a cat@{tmp_path / 'no.png'}"], "no.png': no such file"),
                      "tile": (["a cat@left", "--tile"], "tile: a seamless tile has no left or right"),
                      "story": ([f"a dog ^ a cat@{tmp_path / 'black.png'}"], "is all black")}[case]
    assert main(["generate", *argv, *tiny_args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["prompt", "story", "negative"])
def test_run_finds_a_bad_region_mask_before_the_first_job(tmp_path, tiny_job, capsys, where):
    import yaml

    Image.new("L", (4, 4), 0).save(tmp_path / "black.png")
    good = {**tiny_job, "prompt": "ok", "steps": 1, "output": {"dir": str(tmp_path / "good"), "progress": False}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(good))
    masked = [{"text": "a cat", "mask": str(tmp_path / "black.png")}]
    bad = {"prompt": {**good, "prompt": masked}, "negative": {**good, "negative": masked},
           "story": {**good, "prompt": "", "story": [{"at": 0, "prompt": "a dog"}, {"at": 1, "prompt": masked}]}}[where]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**bad, "output": {"dir": str(tmp_path / "bad")}}))
    assert main(["run", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"b.yaml job 1: region mask '{tmp_path / 'black.png'}' is all black" in err[0], err
    assert not (tmp_path / "good").exists() and not (tmp_path / "bad").exists()


def test_a_region_prompt_never_aims_the_whole_image_classifier(tiny_job, tiny_models, tmp_path):
    from test_guide import _generation, write_guide

    _, _, guide = write_guide(tmp_path)
    assert _generation(tiny_job, tiny_models, guide, "a red square@left|a circle:0.5").guide.label == 0
    assert _generation(tiny_job, tiny_models, guide, "a red square:2@left|a circle:0.5").guide.label == 0
    assert _generation(tiny_job, tiny_models, guide, "a red square@left|a blob").guide.label is None
    assert _generation(tiny_job, tiny_models, guide, "a red square|a circle:0.5").guide.label == 1  # the stronger
