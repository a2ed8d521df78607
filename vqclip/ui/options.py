"""What the page's form is made from: the job's options as defined once in vqclip/config/job.py (key, type, default,
help, allowed values) and the presets with their job defaults, so nothing of either is written twice."""

from __future__ import annotations

import typing
from typing import Any

from ..config.fields import Option, file_keys, walk
from ..config.job import GenerateConfig
from ..draw.registry import DRAWERS, defaults as drawer_defaults
from ..models.presets import DEFAULT_PRESET, list_presets
from ..models.resolve import preset_paths
from ..errors import VqclipError

# the main part of the form, in this order; the rest is "advanced"
MAIN = ("prompt", "negative", "image_prompts", "init.image", "model", "size", "steps", "seed", "cutouts.n",
        "optimizer.lr", "optimizer.name", "candidates.n", "n", "animation.mode", "animation.zoom", "animation.rotate",
        "animation.shift_x", "animation.shift_y")
# keys the page does not offer: files of the server, the server's own settings, lists of sections (story has its own
# box, CLIP models come with the preset)
HIDDEN = (*file_keys(GenerateConfig, "server", "model"), "output.progress", "device", "devices", "clip[].",
          "candidates.clip[].", "story[].", "steer[].", "threads",
          "branch.")  # a run's steers come live, not from the form; a branch's parent is written by the branch
HIDDEN_SECTIONS = tuple(k for k in HIDDEN if k.endswith("."))  # every key inside them (not "animation.depth_size")


def type_name(hint: Any) -> str:
    """int, float, bool, str, list or any; a None-able type by its other member."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is typing.Union and len(args) == 1:
        return type_name(args[0])
    if origin is list or hint is list:
        return "list"
    return {int: "int", float: "float", bool: "bool", str: "str"}.get(hint, "any")


def label_of(opt: Option) -> str:
    """The page's name of an option: its `label`, else its key's words ("cutouts.min_size": "min size (cutouts)";
    a section's `n`: "number of cutouts")."""
    if opt.cli_get("label"):
        return opt.cli_get("label")
    *section, leaf = opt.key.replace("[]", "").split(".")
    words = leaf.replace("_", " ")
    if not section:
        return words
    return f"number of {section[-1]}" if leaf == "n" else f"{words} ({' '.join(section).replace('_', ' ')})"


def item_type(hint: Any) -> str | None:
    """The type name of a list's items (a list of ints reads its text "8,0,8,0" as numbers), else None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        return item_type(args[0])
    inner = typing.get_args(hint) if typing.get_origin(hint) is list else ()
    return type_name(inner[0]) if inner else None


def form_options() -> list[dict]:
    """Every option the form offers: key, label, type, default, help, choices, whether it is in the main part and
    whether it names an image (`upload`: the page offers an upload button, the job gets the upload's id)."""
    out = []
    for opt in walk(GenerateConfig):
        if opt.key.startswith(HIDDEN_SECTIONS) or opt.key in HIDDEN:
            continue
        default = list(opt.default) if isinstance(opt.default, tuple) else opt.default
        out.append({"key": opt.key, "label": label_of(opt), "type": type_name(opt.type), "default": default,
                    "help": opt.help, "choices": list(opt.choices) if opt.choices else None, "flag": opt.flag,
                    "main": opt.key in MAIN, "nullable": opt.default is None,
                    "upload": opt.cli_get("path") == "image",  # names an image: the page's upload button
                    "items": item_type(opt.type)})
    order = {k: i for i, k in enumerate(MAIN)}
    return sorted(out, key=lambda o: (not o["main"], order.get(o["key"], 0)))


def _state(preset) -> str:
    try:
        present = [p.is_file() for p in preset_paths(preset)]
    except VqclipError:
        return "unknown"
    if preset.embedded:
        return "built-in" if all(present) else "missing"
    return "installed" if all(present) else "downloadable"


def presets() -> dict:
    """The presets (installed first) with their job defaults and each image model's own defaults under them (over the
    preset's, as `build_config` layers them), and the one the form starts on: the default preset if its files are
    here, else the built-in mini (so the page works offline out of the box)."""
    items = []
    for name, preset in list_presets().items():
        defaults = {k: v for k, v in preset.defaults.items() if k not in ("guide",)}
        steps = defaults.get("steps", GenerateConfig().steps)  # an image model's own defaults under this preset
        own = {d: drawer_defaults(d, steps) for d in DRAWERS}
        items.append({"name": name, "description": preset.description, "state": _state(preset),
                      "size": preset.approx_size, "defaults": defaults,
                      "drawers": {d: v for d, v in own.items() if v}})
    ready = [i["name"] for i in items if i["state"] in ("installed", "built-in")]
    default = DEFAULT_PRESET if DEFAULT_PRESET in ready else ("mini" if "mini" in ready else DEFAULT_PRESET)
    items.sort(key=lambda i: (i["name"] not in ready, i["name"]))
    return {"presets": items, "default": default}
