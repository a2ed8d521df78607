"""A job from its layers: defaults <- preset <- a PNG's job (`--from`, its output folder left out) <- YAML files <-
the command line, each key from the last layer that sets it, the preset the last one named; and a job file's `jobs:`
entries over its shared keys."""

import pytest
import torch
import yaml

from vqclip.config import GenerateConfig
from vqclip.errors import VqclipError
from vqclip.files.images import save_png
from vqclip.models.presets import get_preset
from vqclip.runs.jobs import build_config, jobs_from_file, png_layer


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_each_key_comes_from_the_last_layer_that_sets_it(tmp_path):
    png = save_png(torch.zeros(1, 3, 8, 8), tmp_path / "old.png", {"config": {
        "model": "mini", "prompt": "from the png", "steps": 11, "cutouts": {"n": 5, "pow": 2.0}, "tv_weight": 1.0,
        "seed": 9, "output": {"dir": str(tmp_path / "old-run"), "save_every": 3}}})
    assert "dir" not in png_layer(png)["output"]
    yamls = [write_yaml(tmp_path / "a.yaml", {"steps": 12, "cutouts": {"n": 6}, "seed": 8}),
             write_yaml(tmp_path / "b.yaml", {"seed": 7})]
    cfg = build_config({"steps": 13}, yamls, from_png=png)
    mini = get_preset("mini").defaults
    assert cfg.model == "mini"
    assert cfg.steps == 13  # the command line
    assert cfg.cutouts.n == 6 and cfg.seed == 7  # the YAML files, the later one last
    assert cfg.prompt == "from the png" and cfg.cutouts.pow == 2.0 and cfg.tv_weight == 1.0  # the PNG over the preset
    assert cfg.output.save_every == 3 and cfg.output.dir is None  # a re-run goes to a new folder
    assert cfg.init.kind == mini["init"]["kind"] != GenerateConfig().init.kind  # the preset over the defaults
    assert cfg.size == mini["size"] and cfg.cutouts.augments == mini["cutouts"]["augments"]
    assert cfg.state_every == GenerateConfig().state_every  # set by no layer: the default


def test_the_preset_is_the_last_one_named(tmp_path):
    yaml_file = write_yaml(tmp_path / "a.yaml", {"model": "imagenet-1024", "prompt": "x"})
    cfg = build_config({"model": "mini"}, [yaml_file])
    assert cfg.model == "mini" and cfg.size == get_preset("mini").defaults["size"]
    other = build_config(None, [yaml_file])
    assert other.model == "imagenet-1024" and other.init.kind == GenerateConfig().init.kind
    assert build_config({"prompt": "x"}).model == "imagenet-16384"  # none named: the default preset
    own = build_config({"prompt": "x", "vqgan": {"config": "v.yaml", "checkpoint": "v.ckpt"}})
    assert own.model is None and own.vqgan.checkpoint == "v.ckpt"  # own files: no preset beneath them


@pytest.mark.parametrize("key, command", [("jobs", "vqclip run"), ("sweep", "vqclip run")])
def test_a_job_list_or_sweep_is_not_a_config_layer(tmp_path, key, command):
    path = write_yaml(tmp_path / "many.yaml", {key: [{"prompt": "a"}] if key == "jobs" else {"seed": [1, 2]}})
    with pytest.raises(VqclipError, match=f"{key}:.*which --config cannot take; run it with `{command} "):
        build_config(None, [path])


def test_the_jobs_of_a_file_are_its_entries_over_its_shared_keys(tmp_path):
    path = write_yaml(tmp_path / "jobs.yaml", {"steps": 5, "cutouts": {"n": 4, "pow": 2.0},
                                              "jobs": [{"prompt": "a"}, {"prompt": "b", "cutouts": {"n": 8}}]})
    assert jobs_from_file(path) == [{"steps": 5, "cutouts": {"n": 4, "pow": 2.0}, "prompt": "a"},
                                    {"steps": 5, "cutouts": {"n": 8, "pow": 2.0}, "prompt": "b"}]
    single = write_yaml(tmp_path / "one.yaml", {"prompt": "c"})
    assert jobs_from_file(single) == [{"prompt": "c"}]
    for bad in ([], {"prompt": "a"}, ["a"]):
        with pytest.raises(VqclipError, match="'jobs' must be a non-empty list of job mappings"):
            jobs_from_file(write_yaml(tmp_path / "bad.yaml", {"jobs": bad}))
