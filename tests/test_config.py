"""The job config: strict keys and types, shorthands, layering, and one-line errors."""

import pytest

from vqclip.config import GenerateConfig, check_inputs, load_yaml, merge_layers, to_yaml
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
    cfg = merge_layers([("job.yaml", layer)])  # a valid job: an example may name files the user adds later
    with pytest.raises(VqclipError, match=rf"^{key}: {name}: no such \w+ file") as info:
        check_inputs(cfg)
    assert "\n" not in str(info.value)
    (tmp_path / name).write_bytes(b"present")  # the check is about the path; reading it is the loader's job
    check_inputs(cfg)
