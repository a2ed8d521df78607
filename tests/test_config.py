"""The job config: strict keys and types, shorthands, layering, and one-line errors."""

import pytest
from PIL import Image

from vqclip.config import GenerateConfig, check_inputs, merge_layers, to_yaml
from vqclip.files.jobyaml import load_yaml
from vqclip.errors import VqclipError


def test_defaults_are_valid_and_yaml_round_trips(tmp_path):
    cfg = merge_layers([])
    assert isinstance(cfg, GenerateConfig) and cfg.cutouts.n == 32
    (tmp_path / "job.yaml").write_text(to_yaml(cfg))
    assert merge_layers([("job", load_yaml(tmp_path / "job.yaml"))]) == cfg


def test_layers_override_in_order_and_shorthands():
    cfg = merge_layers([("a", {"steps": 10, "size": 128, "clip": {"model": "x.json", "weight": 2}}),
                        ("b", {"steps": 20, "cutouts": {"n": 4}, "negative": "blurry"})])
    assert cfg.steps == 20 and cfg.size == [128, 128] and cfg.cutouts.n == 4 and cfg.cutouts.pow == 1.0
    assert len(cfg.clip) == 1 and cfg.clip[0].model == "x.json" and cfg.clip[0].weight == 2
    assert cfg.negative == ["blurry"]


@pytest.mark.parametrize("layer,match", [
    ({"stepz": 3}, "unknown key 'stepz'; did you mean 'steps'"),
    ({"cutouts": {"nn": 3}}, "unknown key 'cutouts.nn'"),
    ({"steps": "many"}, "steps:"),
    ({"size": [64]}, "size: expected two sides"),
    ({"size": [0, 64]}, "size: expected two sides"),
    ({"size": [100000, 64]}, "size: expected two sides"),
    ({"optimizer": {"name": "lbfgs2"}}, "optimizer.name: unknown value 'lbfgs2'"),
    ({"cutouts": {"augments": ["blur"]}}, "cutouts.augments: unknown value 'blur'"),
    ({"init": {"kind": "image"}}, "init.image is not set"),
    ({"device": "tpu"}, "device: unknown device 'tpu'"),
    ({"clip": []}, "at least one CLIP"),
    ({"steps": -1}, "steps: must be >= 0"),
    ({"clip": 5}, "clip: expected {model"),
    ({"clip": [5]}, r"clip\[0\]: expected a mapping"),
    ({"cutouts": 3}, "cutouts: expected a section"),
    ({"cutouts": {"augments": "affine"}}, "cutouts.augments: expected a list"),
    ({"output": [1]}, "output: expected a section"),
    ({"seed": 1.5}, "seed:"),
    ({"prompt": "a||b"}, "empty part between"),
    ({"negative": ["blurry:"]}, "empty weight after"),
    ({"image_prompts": [":2"]}, "no text before the weight"),
    ({"optimizer": {"lr": float("nan")}}, "optimizer.lr: must be a finite number"),
    ({"tv_weight": float("inf")}, "tv_weight: must be a finite number"),
    ({"clip": [{"model": "x.json", "weight": float("nan")}]}, r"clip\[0\]\.weight: must be a finite number"),
    ({"seed": 2**64}, "seed: must be a 64-bit integer"),
    ({"tv_weight": -5}, "tv_weight: must be >= 0"),
    ({"init": {"weight": -1}}, "init.weight: must be >= 0"),
    ({"cutouts": {"noise": -0.1}}, "cutouts.noise: must be >= 0"),
    ({"optimizer": {"min_factor": -1}}, "optimizer.min_factor: must be >= 0"),
    ({"clip": [{"model": "a.json", "weight": 1}, {"model": "b.json", "weight": -1}]},
     r"clip\[1\]\.weight: must be >= 0"),
    ({"candidates": {"clip": [{"model": "a.json", "weight": -1}]}}, r"candidates\.clip\[0\]\.weight: must be >= 0"),
])
def test_bad_values_are_one_line_errors(layer, match):
    with pytest.raises(VqclipError, match=match) as info:
        merge_layers([("job.yaml", layer)])
    assert "\n" not in str(info.value)


def test_error_names_the_source():
    with pytest.raises(VqclipError, match=r"^my\.yaml: "):
        merge_layers([("my.yaml", {"bogus": 1})])


@pytest.mark.parametrize("text,match", [("steps: [1, 2", "malformed YAML"), ("- a\n- b", "expected a mapping")])
def test_malformed_yaml(tmp_path, text, match):
    (tmp_path / "job.yaml").write_text(text)
    with pytest.raises(VqclipError, match=match):
        load_yaml(tmp_path / "job.yaml")


def test_missing_yaml(tmp_path):
    with pytest.raises(VqclipError, match="no such job file"):
        load_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize("layer,key,name", [
    ({"init": {"kind": "image", "image": "gone.png"}}, "init.image", "gone.png"),
    ({"image_prompts": ["gone.png:0.5"]}, "image_prompts", "gone.png"),
    ({"restyle": {"input": "gone.mp4"}}, "restyle.input", "gone.mp4"),
])
def test_missing_input_files_are_one_line_errors(tmp_path, monkeypatch, layer, key, name):
    monkeypatch.chdir(tmp_path)
    cfg = merge_layers([("job.yaml", {"prompt": "x", **layer})])  # valid: an example may name files added later
    with pytest.raises(VqclipError, match=rf"^{key}: {name}: no such \w+ file") as info:
        check_inputs(cfg)
    assert "\n" not in str(info.value)
    if name.endswith(".png"):  # an image is read here too: a corrupt one fails before any run folder is made
        (tmp_path / name).write_bytes(b"not a png")
        with pytest.raises(VqclipError, match=f"{name}: not a readable image"):
            check_inputs(cfg)
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    else:  # a video is only looked for; the restyle reads it before its run folder is made
        (tmp_path / name).write_bytes(b"present")
    check_inputs(cfg)


def test_a_folder_where_a_file_belongs_says_so(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(VqclipError, match=r"^init\.image: .*d: is a folder, not an image file; check the path$"):
        check_inputs(merge_layers([("job.yaml", {"prompt": "x", "init": {"kind": "image",
                                                                          "image": str(tmp_path / "d")}})]))
    with pytest.raises(VqclipError, match=r"d: is a folder, not a job file$"):
        load_yaml(tmp_path / "d")


def test_a_job_with_nothing_to_aim_at_fails_before_models_load():
    with pytest.raises(VqclipError, match="nothing to aim at"):
        check_inputs(merge_layers([("job.yaml", {})]))  # an empty job file: no preset download first
    with pytest.raises(VqclipError, match="nothing to aim at"):
        check_inputs(merge_layers([("job.yaml", {"prompt": "x:-1", "negative": ["y"]})]))
    check_inputs(merge_layers([("job.yaml", {"story": [{"at": 0, "prompt": "x"}]})]))  # a story has its targets


def test_strings_stay_as_written(tmp_path, monkeypatch):
    """No OmegaConf interpolation: `${...}` in a prompt is text, from the CLI, a job file or job.yaml read back."""
    monkeypatch.setenv("VQCLIP_TEST_SECRET", "leaked")
    texts = ["a ${steps} cat", "x ${oc.env:VQCLIP_TEST_SECRET}", "a ${nope", "c:\\${x} \\${y}"]
    for text in texts:
        cfg = merge_layers([("command line", {"prompt": text, "negative": [text]})])
        assert cfg.prompt == text and cfg.negative == [text]
        (tmp_path / "job.yaml").write_text(to_yaml(cfg))
        assert merge_layers([("job.yaml", load_yaml(tmp_path / "job.yaml"))]) == cfg
    (tmp_path / "job.yaml").write_text("prompt: '${steps}'\noptimizer: {lr: 1e-3}\n")
    assert load_yaml(tmp_path / "job.yaml") == {"prompt": "${steps}", "optimizer": {"lr": 0.001}}
    (tmp_path / "job.yaml").write_text("prompt: a\nprompt: b\n")
    with pytest.raises(VqclipError, match="malformed YAML.*duplicate key prompt"):
        load_yaml(tmp_path / "job.yaml")


def test_omegaconf_errors_without_text_or_with_not_int_stay_one_clear_line():
    from omegaconf.errors import ValidationError

    from vqclip.config.layers import _explain

    assert str(_explain(ValidationError(""), "job.yaml")) == "job.yaml: ?: ValidationError"
    assert "unknown key" not in str(_explain(ValidationError("Value 'x' is not int"), "job.yaml"))


@pytest.mark.parametrize("layer, expected", [
    ({"cutouts": {"pow": -1}}, "cutouts.pow: must be > 0"),
    ({"cutouts": {"min_size": 2}}, "cutouts.min_size: must be in [0, 1], got 2"),
    ({"output": {"fps": 0}}, "output.fps: must be >= 1, got 0"),
    ({"output": {"save_every": -1}}, "output.save_every: must be >= 0"),
    ({"change_every": -1}, "change_every: must be >= 0"),
    ({"state_every": -2}, "state_every: must be >= 0"),
    ({"restyle": {"input": "v.mp4", "blend": 2}}, "restyle.blend: must be in [0, 1)"),
    ({"restyle": {"input": "v.mp4", "steps_per_frame": 0}}, "restyle.steps_per_frame: must be >= 1, got 0"),
    ({"restyle": {"input": "v.mp4", "max_frames": -1}}, "restyle.max_frames: must be >= 0 (0 = all frames), got -1"),
    ({"restyle": {"input": "v.mp4", "fps": 0}}, "restyle.fps: must be > 0"),
])
def test_a_value_out_of_range_names_its_key_and_value(layer, expected):
    from vqclip.config import merge_layers

    with pytest.raises(VqclipError) as info:
        merge_layers([("job", {"prompt": "x", **layer})])
    assert str(info.value).startswith(expected)


def test_prompts_as_yaml_mappings_become_the_string_form_and_round_trip(tmp_path):
    """`prompt:`, a story keyframe's `prompt:` and `negative:` entries written as {text, weight, stop} mappings are
    stored as the one string syntax, which job.yaml keeps and reads back to the same job and the same prompts."""
    from vqclip.optim.prompts import Prompt, parse_job_prompts, parse_prompts

    (tmp_path / "in.yaml").write_text(
        "prompt:\n  - {text: a cat, weight: 1, stop: -0.5}\n  - {text: 'ratio 16:9', weight: 0.5}\n  - fur:2\n"
        "negative:\n  - {text: blurry, weight: 0.5, stop: -1.2}\n  - text:-1\n"
        "story:\n  - {at: 0, prompt: [{text: a dog, stop: 0.25}, b:2]}\n  - {at: 5, prompt: c}\n")
    cfg = merge_layers([("in.yaml", load_yaml(tmp_path / "in.yaml"))])
    assert parse_job_prompts(cfg.prompt, cfg.negative, []) == [
        Prompt("a cat", 1.0, stop=-0.5), Prompt("ratio 16:9", 0.5), Prompt("fur", 2.0),
        Prompt("blurry", -0.5, stop=-1.2), Prompt("text", -1.0)]
    assert isinstance(cfg.prompt, str) and all(isinstance(n, str) for n in cfg.negative)
    assert parse_prompts(cfg.story[0].prompt) == [Prompt("a dog", 1.0, stop=0.25), Prompt("b", 2.0)]
    assert cfg.story[1].prompt == "c"
    (tmp_path / "job.yaml").write_text(to_yaml(cfg))
    assert merge_layers([("job.yaml", load_yaml(tmp_path / "job.yaml"))]) == cfg


BAD_PROMPT_MAPPINGS = [
    ("prompt:\n  - {text: a cat, wieght: 1}\n", "job.yaml: prompt[0]: unknown key 'wieght'; did you mean 'weight'?"),
    ("prompt:\n  - {text: a cat, stop: low}\n", "job.yaml: prompt[0].stop: expected a number, got 'low'"),
    ("prompt: x\nstory:\n  - {at: 0, prompt: [{txt: a}]}\n",
     "job.yaml: story[0].prompt[0]: unknown key 'txt'; did you mean 'text'?"),
    ("prompt: x\nnegative:\n  - {text: a, stp: -1}\n", "job.yaml: negative[0]: unknown key 'stp'; did you mean 'stop'?"),
    ("prompt: 'a cat:1:'\n", "empty stop after ':'; write 'a cat:1:-0.5'"),
]


@pytest.mark.parametrize("text,expected", BAD_PROMPT_MAPPINGS)
def test_bad_prompt_mappings_are_one_line_and_exit_2(tmp_path, tiny_args, capsys, text, expected):
    from vqclip.cli import main

    (tmp_path / "job.yaml").write_text(text)
    assert main(["generate", "--config", str(tmp_path / "job.yaml"), *tiny_args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "o").exists()
