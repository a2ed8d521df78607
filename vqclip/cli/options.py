"""The job options of the command line, generated from the config fields (vqclip.config.job): each flag, its type,
choices, help with the default and the YAML key, and the config layer the given flags make."""

from __future__ import annotations

import argparse
import typing
from typing import Any, Iterable, Optional

import yaml

from ..config import GenerateConfig
from ..config.fields import Option, walk
from ..errors import VqclipError, shown
from ..files.jobyaml import load_value

JOB_SECTIONS = ("animation.", "restyle.")  # options of their own commands (zoom, restyle), not of generate
PRESET_GIVES = ("clip[].model", "clip[].pretrained")  # a preset names its CLIP; these defaults are the fallback


def job_options(include: Iterable[str] = (), skip: Iterable[str] = ()) -> list[Option]:
    """The options with a flag: every one outside `JOB_SECTIONS`, plus the sections in `include`, minus the flags
    in `skip`."""
    include, skip = tuple(include), set(skip)
    return [o for o in walk(GenerateConfig) if o.flag and o.flag not in skip
            and (not o.key.startswith(JOB_SECTIONS) or o.key.startswith(include))]


def _scalar(tp: Any) -> Any:
    """The Python type a flag's value converts to: Optional[X] -> X; a list's item type."""
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is list:
        tp = typing.get_args(tp)[0]
    return tp


def _number_or_keys(text: str) -> float | str:
    """'1.02' -> 1.02; '0:1.0, 50:1.05' stays a key-frame string (checked by the config)."""
    try:
        return float(text)
    except ValueError:
        return text


class _Defaults:
    """Help lines end with `(default: X)` where an option has a default worth saying: not None, not an on/off
    flag's False, not an empty list, and not where the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        if ("default" in text or default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                or default == [] or not (action.option_strings or action.nargs in ("?", "*"))):
            return text
        return f"{text} (default: %(default)s)"


class HelpFormatter(_Defaults, argparse.HelpFormatter):
    """Every command's --help: wrapped text, defaults shown."""


class RawHelpFormatter(_Defaults, argparse.RawDescriptionHelpFormatter):
    """A command whose epilog holds examples laid out by hand; defaults shown."""


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(map(str, value)) if value else "none"
    return str(value)


def preset_values() -> dict[str, dict[str, Any]]:
    """Job key -> {preset: its default} for every key a built-in preset sets beneath the user's values (mini's steps,
    size, ...), so that --help says where a preset's default replaces the listed one."""
    from ..models.presets import BUILTIN_FILE, load_presets_file  # here: read when a parser is built, not at import

    out: dict[str, dict[str, Any]] = {}

    def walk_layer(name: str, layer: dict, prefix: str = "") -> None:
        for key, value in layer.items():
            if isinstance(value, dict):
                walk_layer(name, value, f"{prefix}{key}.")
            else:
                out.setdefault(prefix + key, {})[name] = value

    for name, preset in load_presets_file(BUILTIN_FILE, builtin=True).items():
        walk_layer(name, {k: v for k, v in preset.defaults.items() if k != "guide"})  # the guide's files: no flag
    return out


def describe(o: Option, helps: Optional[dict] = None, presets: Optional[dict] = None) -> str:
    """The `--help` line of an option: what it does, its choices, its default (and the defaults of the presets that
    set it, from `presets`: see `preset_values`) and its YAML key (`helps`: whole lines for flags that mean something
    else on a command)."""
    if helps and o.flag in helps:
        return helps[o.flag]
    text = o.cli_get("flag_help") or o.help
    if o.choices and o.cli_get("split"):
        text += f"; any of {', '.join(o.choices)}"
    elif o.choices and o.metavar:  # a name the config checks (optimizers: in any case), listed here
        text += f": {', '.join(o.choices)}"
    key = o.key.replace("[]", "[i]")
    if o.cli_get("negate"):
        return f"{text} [{key}: false; default true]"
    if o.default is None and o.cli_get("unset"):
        default = f" (default: {o.cli_get('unset')})"
    elif o.default is None or o.default == [] or "default" in text:  # nothing to say, or the help says it
        default = ""
    elif o.key in PRESET_GIVES:  # the preset's CLIP comes first
        default = f" (default: the preset's, else {_shown(o.default)})"
    else:
        default = f" (default: {_shown(o.default)})"
    by_preset = {name: v for name, v in (presets or {}).get(o.key.replace("[]", ""), {}).items() if v != o.default}
    if by_preset:
        default = (default[:-1] if default else " (default: " + _shown(o.default)) + "".join(
            f"; {name}: {_shown(v)}" for name, v in by_preset.items()) + ")"
    return f"{text}{default} [{key}]"


def add_job_options(p: argparse.ArgumentParser, options: list[Option], helps: Optional[dict] = None) -> None:
    """Add each option's flag to `p`; `helps` replaces the help of flags that mean something else on a command
    (restyle's --steps counts steps per frame)."""
    presets = preset_values()
    for o in options:
        kw: dict[str, Any] = {"dest": _dest(o), "help": describe(o, helps, presets)}
        if o.cli_get("negate") or o.type is bool:  # a flag that sets False (negate) or True (--tile)
            kw["action"] = "store_true"
        else:
            tp = _scalar(o.type)
            kw["type"] = _number_or_keys if tp is Any else (str if o.cli_get("split") else tp)
            if o.metavar:
                kw["metavar"] = o.metavar
            if o.choices and not o.cli_get("split") and not o.metavar:
                kw["choices"] = list(o.choices)
            if o.cli_get("nargs"):
                kw["nargs"] = o.cli_get("nargs")
            if o.cli_get("repeat"):
                kw["action"] = "append"
        p.add_argument(o.flag, **kw)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other key, e.g. cutouts.noise=0.05 (a YAML value)")


def _dest(o: Option) -> str:
    """The argparse attribute of an option's flag: opt_ and its key (a list item's key joined by __)."""
    return "opt_" + o.key.replace("[].", "__").replace(".", "__")


def quiet_flag(args: argparse.Namespace) -> bool:
    """Whether a job command was given --quiet (output.progress: false): its notices are hidden too."""
    return bool(getattr(args, "opt_output__progress", False))


def set_key(tree: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, making the sections on the way."""
    keys = dotted.split(".")
    if any(k.isdigit() for k in keys):
        raise VqclipError(f"--set {dotted}: --set cannot index a list; give the whole list in a job YAML (clip: "
                          "[{model: ..., weight: 2}]) or use the matching options (--clip-model, --clip-weight)")
    for k in keys[:-1]:
        tree = tree.setdefault(k, {})
        if not isinstance(tree, dict):
            raise VqclipError(f"--set {dotted}: '{k}' is not a section")
    tree[keys[-1]] = value


def cli_overrides(args: argparse.Namespace, options: Optional[list[Option]] = None) -> dict:
    """The config layer given on the command line (only what was actually passed): each flag's key, the keys a flag
    implies (--init-image sets init.kind: image), the list of CLIP models from --clip-model/--clip-pretrained/
    --clip-weight, and every --set KEY=VALUE."""
    out: dict = {}
    if getattr(args, "prompt", None) is not None:
        out["prompt"] = args.prompt
    items: dict[str, dict[str, list]] = {}  # list of sections -> key -> the values given, in order
    implied: dict[str, tuple[str, Any]] = {}
    for o in options if options is not None else job_options(include=JOB_SECTIONS):
        value = getattr(args, _dest(o), None)
        if value is None or value is False:
            continue
        if o.cli_get("negate"):
            value = False
        elif o.cli_get("split"):
            value = [v.strip() for v in value.split(o.cli_get("split")) if v.strip()]
        if "[]." in o.key:
            section, key = o.key.split("[].")
            items.setdefault(section, {})[key] = value
            continue
        if o.cli_get("implies"):
            implied[o.cli_get("implies")[0]] = (o.flag, o.cli_get("implies")[1])
        set_key(out, o.key, value)
    for key, (flag, value) in implied.items():
        given = _get(out, key)
        if given is not None and given != value:
            other = next(o.flag for o in walk(GenerateConfig) if o.key == key)
            raise VqclipError(f"{other} {given} and {flag} contradict each other; give one of them")
        set_key(out, key, value)
    for section, given in items.items():
        out[section] = _items(section, given)
    for item in getattr(args, "set", []) or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise VqclipError(f"--set {shown(item)}: expected KEY=VALUE, e.g. --set cutouts.noise=0.05")
        try:
            value = load_value(raw, f"--set {shown(key.strip())}")
        except yaml.YAMLError:
            raise VqclipError(f"--set {shown(item)}: the value is not valid YAML") from None
        set_key(out, key.strip(), value)
    return out


def _get(tree: dict, dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(tree, dict) or k not in tree:
            return None
        tree = tree[k]
    return tree


def _items(section: str, given: dict[str, list]) -> list[dict]:
    """The CLIP list from repeated flags: each --clip-model starts an item, the n-th --clip-pretrained and
    --clip-weight fill the n-th item; an item without a pretrained value has none (a JSON or folder brings its own,
    a name alone is random weights)."""
    flags = {o.key.split("[].")[1]: o.flag for o in walk(GenerateConfig) if o.key.startswith(section + "[].")}
    first, rest = next(iter(flags)), [k for k in flags if k != list(flags)[0]]
    n = len(given.get(first, []))
    if any(len(given.get(k, [])) > n for k in rest):
        raise VqclipError(f"{'/'.join(flags[k] for k in rest)}: give one per {flags[first]}, in the same order (a "
                          f"weight without {flags[first]} would be ignored)")
    out = []
    for i in range(n):
        item = {first: given[first][i], "pretrained": None}
        item.update({k: given[k][i] for k in rest if i < len(given.get(k, []))})
        out.append(item)
    return out

