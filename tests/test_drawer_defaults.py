"""Drawer defaults (vqclip.draw.registry.DEFAULTS, laid by vqclip.runs.jobs.build_config): the option values a drawer
needs take effect over the preset's defaults, and never over a value the user set on the CLI, in YAML or in the API."""

from __future__ import annotations

from functools import lru_cache

import pytest
import yaml

from vqclip.api import Pipeline
from vqclip.cli import build_parser
from vqclip.cli.generate import GENERATE
from vqclip.cli.options import cli_overrides
from vqclip.draw import registry
from vqclip.models.presets import get_preset
from vqclip.runs.jobs import build_config

MINI_TV = get_preset("mini").defaults["tv_weight"]  # what the preset asks of every drawer (TV 40)


parser = lru_cache(maxsize=1)(build_parser)  # built once: it imports every command's module


def cli(*argv: str, model: str = "mini"):
    """The job `vqclip generate` builds from this command line (its own parser and layers; nothing runs)."""
    args = parser().parse_args(["generate", "a red circle", *(["--model", model] if model else []), *argv])
    return build_config(cli_overrides(args, GENERATE), [args.config] if args.config else [], args.from_png)


def write(tmp_path, name: str, data: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_preset_asks_for_tv_so_the_drawer_defaults_below_are_seen_to_win():
    assert MINI_TV > 0 and cli().tv_weight == MINI_TV and cli("--drawer", "vqgan").tv_weight == MINI_TV


@pytest.mark.parametrize("drawer", ["pixel", "fft"])
def test_pixel_and_fft_run_without_the_presets_tv(drawer):
    """TV penalises the block edges of pixel art and the fft's own detail: both drawers turn it off over any preset."""
    assert cli("--drawer", drawer).tv_weight == 0.0
    assert cli("--drawer", drawer, model="imagenet-16384").tv_weight == 0.0


def test_pixel_art_on_any_preset_is_4_px_cells_unless_the_user_sets_them(tmp_path):
    """docs/generating.md's rule: 4-px cells (16x16 on mini's 64x64, measured best there) unless set."""
    assert cli("--drawer", "pixel").drawer.pixel_size == 4
    assert cli("--drawer", "pixel", "--set", "drawer.pixel_size=8").drawer.pixel_size == 8
    job = write(tmp_path, "p.yaml", {"drawer": {"name": "pixel", "pixel_size": 2}})
    assert cli("--config", job).drawer.pixel_size == 2


@pytest.mark.parametrize("value", [MINI_TV, 5.0, 0.0])
def test_a_tv_weight_on_the_command_line_beats_the_drawers(value):
    """Explicit wins, even when it equals the preset's value (set, not merely different)."""
    assert cli("--drawer", "pixel", "--tv-weight", str(value)).tv_weight == value
    assert cli("--drawer", "fft", "--set", f"tv_weight={value}").tv_weight == value


def test_a_tv_weight_in_yaml_beats_the_drawer_named_on_the_command_line(tmp_path):
    job = write(tmp_path, "job.yaml", {"tv_weight": 7.0})
    assert cli("--config", job, "--drawer", "pixel").tv_weight == 7.0
    named = write(tmp_path, "pixel.yaml", {"drawer": {"name": "pixel"}})
    assert cli("--config", named).tv_weight == 0.0  # the drawer named in YAML brings its defaults too
    assert cli("--config", named, "--tv-weight", "3").tv_weight == 3.0


def test_the_last_named_drawer_brings_its_defaults(tmp_path):
    named = write(tmp_path, "pixel.yaml", {"drawer": {"name": "pixel"}})
    assert cli("--config", named, "--drawer", "vqgan").tv_weight == MINI_TV
    vqgan = write(tmp_path, "vqgan.yaml", {"drawer": {"name": "vqgan"}})
    assert cli("--config", vqgan, "--drawer", "fft").tv_weight == 0.0


def test_the_api_keywords_beat_the_drawers_and_the_drawers_beat_the_presets():
    pipe = Pipeline([("preset", {"model": "mini"})], device="cpu")  # loads nothing until a run
    assert pipe.config("a red circle").tv_weight == MINI_TV
    assert pipe.config("a red circle", drawer={"name": "pixel"}).tv_weight == 0.0
    assert pipe.config("a red circle", drawer={"name": "pixel"}, tv_weight=MINI_TV).tv_weight == MINI_TV


def test_without_a_preset_the_drawers_defaults_lie_beneath_every_user_layer(tmp_path):
    """Named VQGAN files instead of a preset: the drawer's layer goes first, under the YAML and the command line."""
    files = {"vqgan": {"config": "model.yaml", "checkpoint": "last.ckpt"}}
    job = write(tmp_path, "job.yaml", {**files, "tv_weight": 5.0})
    assert cli("--config", job, "--drawer", "pixel", model="").tv_weight == 5.0
    assert cli("--config", write(tmp_path, "files.yaml", files), "--drawer", "pixel", model="").tv_weight == 0.0
    assert build_config({**files, "drawer": {"name": "fft"}, "tv_weight": 2.0}).tv_weight == 2.0


def test_the_defaults_are_a_fresh_copy_and_none_for_other_names():
    first = registry.defaults("pixel")
    first["tv_weight"] = 99.0
    assert registry.defaults("pixel") == registry.DEFAULTS["pixel"] and registry.DEFAULTS["pixel"]["tv_weight"] == 0
    assert registry.defaults("vqgan") == {} and registry.defaults("nope") == {} and registry.defaults(["pixel"]) == {}


def test_pixel_and_fft_take_twice_the_presets_steps_for_a_still_image_and_the_users_steps_win(tmp_path):
    mini = get_preset("mini").defaults["steps"]
    assert cli("--drawer", "pixel").steps == 2 * mini and cli().steps == mini  # vqgan: the preset's
    assert cli("--drawer", "fft").steps == 2 * mini and cli("--drawer", "fft", "--steps", "9").steps == 9
    assert cli("--drawer", "pixel", "--steps", str(mini)).steps == mini  # the user's, even the preset's own
    assert cli("--config", write(tmp_path, "s.yaml", {"steps": 7}), "--drawer", "pixel").steps == 7
    assert build_config({"drawer": {"name": "pixel"}, "prompt": "a"}).steps == 2 * build_config({"prompt": "a"}).steps
    zoom = build_config({"model": "mini", "drawer": {"name": "pixel"}, "prompt": "a", "animation": {"mode": "zoom"}})
    assert zoom.steps == mini  # a video's steps set its length: not scaled
    assert registry.defaults("pixel", 3) == {**registry.DEFAULTS["pixel"], "steps": 6}
    assert "steps" not in registry.defaults("pixel") and "steps" not in registry.defaults("pixel", True)
