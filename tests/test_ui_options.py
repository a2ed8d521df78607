"""The page's form is generated from the job's option definitions (vqclip/config/job.py): every option but the server's
own and those naming its files, the main ones first in the documented order, each with the type, default, choices
and help of its definition; the presets with their state, installed ones first, and the one the form starts on."""

from __future__ import annotations

import pytest

from vqclip.config.fields import walk
from vqclip.config.job import GenerateConfig
from vqclip.ui.options import form_options, presets

# what the form must not offer (docs/ui.md): files of the server, its own settings, lists of sections
NOT_OFFERED = ("vqgan.", "guide.model", "guide.weights", "restyle.input", "output.dir", "output.progress",
               "device", "devices", "threads", "output.upscale.model", "animation.depth", "clip[].", "candidates.clip[].",
               "story[].", "steer[].", "branch.")
FIRST = ["prompt", "negative", "image_prompts", "init.image", "model", "size", "steps", "seed", "cutouts.n",
         "optimizer.lr", "optimizer.name", "candidates.n", "n", "animation.mode", "animation.zoom", "animation.rotate",
         "animation.shift_x", "animation.shift_y"]


def hidden(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in NOT_OFFERED)


def test_the_form_offers_every_option_but_the_servers_main_ones_first_then_the_rest_in_definition_order():
    defined = list(walk(GenerateConfig))
    options = form_options()
    keys = [o["key"] for o in options]
    assert keys == FIRST + [o.key for o in defined if not hidden(o.key) and o.key not in FIRST]
    assert [o["main"] for o in options] == [k in FIRST for k in keys]
    assert any(hidden(o.key) for o in defined if o.key.startswith("guide."))  # the check is not empty
    by_key = {o.key: o for o in defined}
    for o in options:
        d = by_key[o["key"]]
        assert (o["help"], o["flag"]) == (d.help, d.flag)
        assert o["default"] == (list(d.default) if isinstance(d.default, tuple) else d.default)
        assert o["choices"] == (list(d.choices) if d.choices else None)
        assert o["nullable"] is (d.default is None)


@pytest.mark.parametrize("key, kind", [
    ("steps", "int"), ("seed", "int"), ("optimizer.lr", "float"), ("prompt", "str"), ("init.image", "str"),
    ("size", "list"), ("negative", "list"), ("cutouts.augments", "list"), ("compile", "bool"),
    ("output.video_length", "float"), ("animation.zoom", "any"),
])
def test_each_option_has_the_type_of_its_definition(key, kind):
    [option] = [o for o in form_options() if o["key"] == key]
    assert option["type"] == kind


def install(preset_name: str) -> None:
    """Empty files where a preset's VQGAN lives: enough for the page to call it installed."""
    from vqclip.models.presets import list_presets
    from vqclip.models.resolve import preset_paths

    for path in preset_paths(list_presets()[preset_name]):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_presets_installed_first_and_the_form_starts_on_the_default_once_it_is_here(monkeypatch, tmp_path):
    monkeypatch.setenv("VQCLIP_HOME", str(tmp_path / "home"))
    install("sflckr")
    got = presets()
    names = [p["name"] for p in got["presets"]]
    state = {p["name"]: p["state"] for p in got["presets"]}
    assert got["default"] == "mini" and names[:2] == ["mini", "sflckr"] and state["sflckr"] == "installed"
    assert names[2:] == sorted(names[2:]) and {state[n] for n in names[2:]} == {"downloadable"}
    assert all("guide" not in p["defaults"] for p in got["presets"])
    install("imagenet-16384")
    got = presets()
    assert got["default"] == "imagenet-16384"
    assert [p["name"] for p in got["presets"]][:3] == ["imagenet-16384", "mini", "sflckr"]


def test_every_key_the_form_offers_is_a_key_a_job_takes():
    """The page sends the form's keys as the job's keys: a list of sections (`story[].at`, `steer[].lr`) is no such
    key, so none is offered."""
    from vqclip.config import merge_layers

    for o in form_options():
        assert "[]" not in o["key"], o["key"]
        head, *rest = o["key"].split(".")
        layer = {head: o["default"]} if not rest else {head: {rest[0]: o["default"]}} if len(rest) == 1 else \
            {head: {rest[0]: {rest[1]: o["default"]}}}
        merge_layers([("form", layer)])
