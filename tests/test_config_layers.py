"""Config layers (vqclip/config/layers.py): an init image starts the run wherever it is given (a job file, --set, the
Python API, the page), the shorthands, strict merging with the failing layer named, and error lines that never
echo a huge value whole."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from vqclip.cli import build_parser, main
from vqclip.cli.options import cli_overrides
from vqclip.config import check_inputs, merge_layers
from vqclip.errors import VqclipError
from vqclip.runs.batch import plan_job
from vqclip.runs.jobs import build_config

from test_checks import png_header

MINI_KIND = ("preset mini", {"init": {"kind": "background"}})  # a preset's own start, as mini's is


def kind_and_image(layers):
    cfg = merge_layers([MINI_KIND, *layers])
    return cfg.init.kind, cfg.init.image


def refused(layers) -> str:
    with pytest.raises(VqclipError) as info:
        merge_layers(layers)
    assert "\n" not in str(info.value)
    return str(info.value)


# ---- defect 1: init.image without init.kind ----

def test_an_init_image_alone_sets_kind_image_over_a_presets_kind():
    assert kind_and_image([("job.yaml", {"prompt": "x", "init": {"image": "s.png"}})]) == ("image", "s.png")
    assert kind_and_image([("job.yaml", {"prompt": "x", "init": {"image": "s.png", "kind": "image"}})]) == (
        "image", "s.png")
    assert kind_and_image([("job.yaml", {"prompt": "x", "init": {"image": None}})]) == ("background", None)
    assert kind_and_image([("job.yaml", {"prompt": "x", "init": {"image": ""}})])[0] == "background"
    assert kind_and_image([("a.yaml", {"prompt": "x", "init": {"kind": "flat"}}),
                           ("b.yaml", {"init": {"image": "s.png"}})]) == ("image", "s.png")  # a later image wins


def test_a_kind_other_than_image_beside_an_image_is_one_line_naming_the_layer():
    text = refused([MINI_KIND, ("job.yaml", {"prompt": "x", "init": {"kind": "random", "image": "s.png"}})])
    assert text == ("job.yaml: init.kind is 'random' but init.image is set: give one of them (init.image alone "
                    "starts from the image)")


def test_a_later_layers_kind_wins_and_drops_the_earlier_image():
    """`vqclip run job.yaml --init random` over a job with an image starts at random, and job.yaml says so."""
    assert kind_and_image([("job.yaml", {"prompt": "x", "init": {"image": "s.png"}}),
                           ("command line", {"init": {"kind": "random"}})]) == ("random", None)
    assert kind_and_image([("job.yaml", {"prompt": "x", "init": {"image": "s.png"}}),
                           ("command line", {"init": {"kind": "image"}})]) == ("image", "s.png")
    assert kind_and_image([("job.yaml", {"prompt": "x", "init": {"image": "s.png"}}),
                           ("command line", {"init": {"weight": 0.5}})]) == ("image", "s.png")


def test_set_init_image_sets_the_kind_and_the_image_is_opened(tmp_path):
    png = tmp_path / "s.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(png)
    args = build_parser().parse_args(["generate", "x", "--set", f"init.image={png}"])
    cfg = build_config(cli_overrides(args), base=[MINI_KIND])
    assert (cfg.init.kind, cfg.init.image) == ("image", str(png))
    bomb = png_header(tmp_path / "bomb.png", 20000, 20000)
    args = build_parser().parse_args(["generate", "x", "--set", f"init.image={bomb}"])
    with pytest.raises(VqclipError, match=r"bomb\.png: not a readable image \(Image size \(400000000 pixels\)"):
        check_inputs(build_config(cli_overrides(args), base=[MINI_KIND]))
    args = build_parser().parse_args(["generate", "x", "--init", "flat", "--set", f"init.image={png}"])
    with pytest.raises(VqclipError, match="^command line: init.kind is 'flat' but init.image is set"):
        build_config(cli_overrides(args), base=[MINI_KIND])


def test_the_python_api_keyword_sets_the_kind(tiny_job, tmp_path):
    from vqclip.api import Pipeline

    png = tmp_path / "s.png"
    Image.new("RGB", (8, 8)).save(png)
    pipe = Pipeline([("files", {**tiny_job, "init": {"kind": "gradient"}})], device="cpu")
    cfg = pipe.config("x", init={"image": str(png)})
    assert (cfg.init.kind, cfg.init.image) == ("image", str(png))
    assert pipe.config("x").init.kind == "gradient"


def test_the_pages_init_image_sets_the_kind_and_is_opened(tmp_path):
    from vqclip.ui.jobs import plan

    png = tmp_path / "up.png"
    Image.new("RGB", (8, 8)).save(png)
    job = {"prompt": "a red circle", "model": "mini", "init": {"image": "upload:" + "a" * 32}}
    cfg = plan(job, lambda _id: str(png))
    assert (cfg.init.kind, cfg.init.image) == ("image", str(png))
    png_header(png, 20000, 20000)
    with pytest.raises(VqclipError, match="not a readable image"):
        plan(job, lambda _id: str(png))


def test_a_yaml_jobs_init_image_is_the_start_the_flag_gives(tiny_job, tiny_args, tmp_path):
    """`init: {image: ...}` in a job file runs exactly as `--init-image` (0 steps: final.png is the start)."""
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    job = {**tiny_job, "prompt": "x", "steps": 0, "seed": 1, "output": {"dir": str(tmp_path / "a"), "video": False,
                                                                         "progress": False}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({**job, "init": {"image": str(tmp_path / "s.png")}}))
    assert main(["run", str(tmp_path / "job.yaml")]) == 0
    assert main(["generate", "x", *tiny_args, "--steps", "0", "--seed", "1", "--no-video", "--init-image",
                 str(tmp_path / "s.png"), "--out", str(tmp_path / "b")]) == 0
    written = yaml.safe_load((tmp_path / "a" / "job.yaml").read_text())["init"]
    assert written["kind"] == "image" and written["image"] == str(tmp_path / "s.png")
    a, b = (np.asarray(Image.open(tmp_path / d / "final.png")) for d in "ab")
    assert np.array_equal(a, b)


# ---- shorthands and strict merging ----

def test_shorthands_become_the_full_form():
    cfg = merge_layers([("job.yaml", {"prompt": "x", "clip": "ViT-B/32", "size": 64, "negative": "blurry",
                                      "image_prompts": "ref.png:0.5", "candidates": {"clip": "ViT-B-16"}})])
    assert [(c.model, c.pretrained) for c in cfg.clip] == [("ViT-B-32", "openai")]  # OpenAI's name, open_clip's form
    assert cfg.size == [64, 64] and cfg.negative == ["blurry"] and cfg.image_prompts == ["ref.png:0.5"]
    assert [c.model for c in cfg.candidates.clip] == ["ViT-B-16"]
    cfg = merge_layers([("job.yaml", {"prompt": "x", "clip": ["ViT-B-16", {"model": "hf-hub:org/repo"},
                                                              {"model": "local-dir:/m"},
                                                              {"model": "local-dir:/n", "pretrained": "w.bin"}]})])
    assert [(c.model, c.pretrained) for c in cfg.clip] == [("ViT-B-16", "openai"), ("hf-hub:org/repo", None),
                                                           ("local-dir:/m", None), ("local-dir:/n", "w.bin")]
    assert refused([("job.yaml", {"prompt": "x", "size": True})]).startswith("job.yaml: size: expected a list")


def test_a_later_layer_replaces_lists_and_keeps_the_sections_other_keys():
    cfg = merge_layers([("a.yaml", {"prompt": "x", "negative": ["a", "b"], "cutouts": {"n": 8, "pow": 2.0}}),
                        ("b.yaml", {"negative": ["c"], "cutouts": {"n": 4}})])
    assert cfg.negative == ["c"] and (cfg.cutouts.n, cfg.cutouts.pow) == (4, 2.0)


@pytest.mark.parametrize("bad, expected", [
    ({"cutouts": {"nn": 1}}, "b.yaml: unknown key 'cutouts.nn'; did you mean 'cutouts.n'?"),
    ({"steps": "many"}, "b.yaml: steps: Value 'many' of type 'str' could not be converted to Integer"),
    ({"init": {"color": "red"}}, "b.yaml: init.color: expected a list, got 'red'"),
    ({"init": {"color": {"r": 1}}}, "b.yaml: init.color: expected a list, got {'r': 1}"),
    ({"output": {"upscale": 2}}, "b.yaml: output.upscale: expected a section (a mapping of keys), got 2"),
    ({"prompt": [{"txt": "a"}]}, "b.yaml: prompt[0]: unknown key 'txt'; did you mean 'text'?"),
    (["steps"], "b.yaml: expected a mapping of job keys, got list"),
])
def test_the_layer_at_fault_is_named_not_the_first_or_last(bad, expected):
    assert refused([("a.yaml", {"prompt": "x"}), ("b.yaml", bad), ("c.yaml", {"steps": 3})]) == expected


# ---- defect 6: a huge value is cut in every error ----

HUGE = "x" * 5000


@pytest.mark.parametrize("layer", [
    {HUGE: 1},                                      # unknown key
    {"cutouts": {HUGE: 1}},                         # unknown key in a section
    {"steps": HUGE},                                # wrong type (OmegaConf's message)
    {"steps": "a b " * 1250},                       # wrong type, a value with spaces
    {"optimizer": {"name": HUGE}},                  # bad name
    {"device": HUGE},                               # bad device
    {"seed": 10 ** 5000},                           # out of range, an integer Python will not write out
    {"size": list(range(500))},                     # impossible size
    {"init": {"kind": "flat", "color": [0.5] * 500}},
    {"output": HUGE},                               # a section that is not one
    {"negative": {HUGE: 1}},                        # a list that is not one
    {"prompt": HUGE + "||"},                        # bad prompt
    {"prompt": HUGE + ":"},                         # bad prompt, whose fix repeats it
    {"prompt": [{"text": "a", HUGE: 1}]},           # bad prompt mapping
    {"prompt": HUGE + "\0"},                        # a NUL byte
    {"prompt": "x ^ " + HUGE + ":-1"},              # a story keyframe with nothing to aim at
    {"animation": {"zoom": HUGE}},                  # bad key-framed value
    {"clip": [{"model": "hf-hub:" + "/" * 5000}]},  # bad CLIP name
    {"init": {"kind": HUGE, "image": "s.png"}},     # an init kind beside an image
])
def test_a_huge_value_is_cut_in_the_error(layer):
    text = refused([("job.yaml", {"prompt": "x", **layer})])
    assert len(text) < 300 and "x" * 61 not in text and "a b " * 20 not in text, text


@pytest.mark.parametrize("sweep", [HUGE, {"seed": HUGE}, {HUGE: [1]}, {"seed": [HUGE]}, {"prompt": [HUGE + "||"]}])
def test_a_huge_value_in_a_sweep_is_cut_in_the_error(sweep):
    with pytest.raises(VqclipError) as info:
        plan_job({"prompt": "x", "sweep": sweep}, "job.yaml")
    assert len(str(info.value)) < 300 and "x" * 61 not in str(info.value), str(info.value)


@pytest.mark.parametrize("argv", [["--steps", HUGE], ["--optimizer", HUGE], ["--set", HUGE], ["--set", f"{HUGE}=1"],
                                  ["--set", "steps=[" + HUGE], [HUGE + "a", "b"]])
def test_a_huge_value_on_the_command_line_is_cut(argv, capsys):
    try:
        code = main(["generate", "x", *argv])
    except SystemExit as exc:  # argparse's own refusals exit from inside the parser
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and len(err[0]) < 300, err
