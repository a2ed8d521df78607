"""The command line's help and what is generated from the options: every command's --help shows each option's
default and key (every subcommand parser, nested ones too), every job flag reaches its key, docs/options.md is
up to date."""

from __future__ import annotations

import argparse
import re

import pytest

from vqclip.cli import build_parser, main
from vqclip.config import GenerateConfig
from vqclip.config.fields import walk

NOISE = ("(default: None)", "(default: none)", "(default: False)", "(default: [])", "(default: )")


def _parsers(parser: argparse.ArgumentParser, name: str = "vqclip"):
    """(command name, parser) for the parser and every subcommand below it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


def _text(value) -> str:
    """A default as a help line writes it: lists comma-joined."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _flat(text: str) -> str:
    return " ".join(text.split())


ALL = list(_parsers(build_parser()))
OPTIONS = {o.key: o for o in walk(GenerateConfig)}


def _job_default(action: argparse.Action, help_text: str):
    """A generated job option's default: the config field named by the `[key]` its help ends with."""
    key = re.search(r"\[([\w.\[\]]+)(?::[^\]]*)?\]$", help_text)
    assert key, f"{action.option_strings}: a job option's help ends with its [key]: {help_text!r}"
    return OPTIONS[key.group(1).replace("[i]", "[]")].default


def test_the_walk_finds_every_command():
    names = {n for n, _ in ALL}
    assert {"vqclip generate", "vqclip run", "vqclip zoom", "vqclip restyle", "vqclip resume", "vqclip classify",
            "vqclip search", "vqclip score", "vqclip rank", "vqclip bench", "vqclip models",
            "vqclip models list", "vqclip models download", "vqclip models verify"} <= names


@pytest.mark.parametrize("name,parser", ALL, ids=[n for n, _ in ALL])
def test_every_default_is_in_the_help(name, parser):
    """An option with a default (argparse's, or a job option's config default) says it: `default: X` in its help
    as --help prints it; an on/off flag and an unset option say no `(default: None/False)`."""
    formatter = parser._get_formatter()
    checked = 0
    for action in parser._actions:
        if action.help in (None, argparse.SUPPRESS) or isinstance(action, (
                argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        shown = _flat(formatter._expand_help(action))
        assert not any(n in shown for n in NOISE), f"{name} {action.option_strings}: {shown}"
        if action.dest.startswith("opt_"):  # generated from the config fields: argparse's default is None
            default = _job_default(action, shown)
            if isinstance(default, bool):  # --no-video / --quiet: an on/off flag
                continue
        elif isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            continue  # off unless given: nothing to say
        else:
            default = action.default
        if default is None or default is argparse.SUPPRESS or default == []:
            continue
        checked += 1
        assert f"default: {_text(default)}" in shown or re.search(r"\(default: [^)]+\)", shown), \
            f"{name} {action.option_strings or action.dest}: default {default!r} not in its help: {shown!r}"
    if name in ("vqclip generate", "vqclip bench", "vqclip classify", "vqclip models download"):
        assert checked >= 1


def test_hand_written_defaults_are_the_real_ones(capsys):
    """The hand-written commands' defaults come from argparse itself (a changed default changes the help)."""
    for argv, expected in ((["bench", "--help"], ["image side in pixels (default: 256)", "--vqgan NAME",
                                                    "(default: imagenet-16384)", "(default: auto)"]),
                           (["classify", "--help"], ["images per CLIP batch (default: 32)"]),
                           (["models", "download", "--help"], ["(default: 30.0)"])):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        text = _flat(capsys.readouterr().out)
        for e in expected:
            assert e in text, (argv, e)


def test_a_forgotten_default_fails_the_walk():
    """The walk catches a command that adds an option with a default its help does not show."""
    p = argparse.ArgumentParser(formatter_class=argparse.HelpFormatter)
    p.add_argument("--size", type=int, default=256, help="image side")
    with pytest.raises(AssertionError, match="default 256 not in its help"):
        test_every_default_is_in_the_help("probe", p)
    p = build_parser().commands["bench"]
    p.add_argument("--extra", type=int, default=7, help="an extra knob")  # our formatter says it by itself
    test_every_default_is_in_the_help("bench", p)
    assert "an extra knob (default: 7)" in _flat(p.format_help())


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--steps", "--size", "--seed", "--cutn", "--save-every", "--out", "--config", "--from",
                   "--device", "--no-video", "--model", "--negative", "--image-prompt", "--init-image"):
        assert option in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "generate" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # restyle's --steps and --fps name the keys they set there
        main(["restyle", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "per input frame [restyle.steps_per_frame]" in text and "[restyle.fps]" in text
    assert "--save-every" not in text and "--candidates" not in text  # options restyle and zoom do not use


@pytest.mark.parametrize("command", ["generate", "zoom", "restyle"])
def test_help_shows_every_default_and_key(command, capsys):
    """--help is generated from the config fields: each job option's line names its YAML key and its default."""
    from vqclip.cli.options import JOB_SECTIONS, describe, job_options, preset_values

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    include = {"zoom": ["animation."], "restyle": ["restyle."]}.get(command, [])
    options = job_options(include=include, skip=() if command == "generate" else ("--save-every", "--candidates"))
    assert len(options) >= 30
    for o in options:
        if command == "restyle" and o.flag in ("--steps", "--fps"):
            continue  # they mean per-frame steps and the output rate there, and say so
        line = describe(o, presets=preset_values())
        assert f"[{o.key.replace('[]', '[i]')}" in line and o.flag in text
        assert "(default: " in line or "default true" in line or "default" in o.help or o.default in (None, []), line
        assert "".join(line.split()) in text, line
    assert "(default:300;mini:100)[steps]" in text or command == "restyle"  # and the preset that replaces it
    assert not any(o.key.startswith(JOB_SECTIONS) for o in job_options())  # zoom's and restyle's keys: theirs


def test_every_job_flag_sets_its_key(tiny_args):
    """The flag-to-key map is the fields' own: each flag given on the command line lands on its key."""
    from vqclip.cli.options import cli_overrides

    argv = ["generate", "p", "--steps", "7", "--cutn", "3", "--augments", "affine,noise", "--no-video", "--quiet",
            "--init-image", "x.png", "--clip-model", "a.json", "--clip-model", "ViT-B-32", "--clip-pretrained", "w.pt",
            "--clip-weight", "2", "--size", "40", "24", "--negative", "n1", "--negative", "n2:-0.5", "--set", "tv_weight=3"]
    args = build_parser().parse_args(argv)
    cli = cli_overrides(args)
    assert cli == {"prompt": "p", "steps": 7, "cutouts": {"n": 3, "augments": ["affine", "noise"]},
                   "output": {"video": False, "progress": False}, "init": {"image": "x.png", "kind": "image"},
                   "clip": [{"model": "a.json", "pretrained": "w.pt", "weight": 2.0},
                            {"model": "ViT-B-32", "pretrained": None}],
                   "size": [40, 24], "negative": ["n1", "n2:-0.5"], "tv_weight": 3}


def test_docs_options_lists_every_key_and_is_up_to_date():
    """docs/options.md is generated from the config fields; a key missing from it (or a stale line) fails here."""
    from pathlib import Path

    from vqclip.cli.options_doc import options_markdown
    from vqclip.config import GenerateConfig
    from vqclip.config.fields import walk

    text = (Path(__file__).resolve().parents[1] / "docs" / "options.md").read_text()
    assert text == options_markdown(), "run: python -m vqclip.cli.options_doc > docs/options.md"
    for o in walk(GenerateConfig):
        assert f"| `{o.key.replace('[]', '[i]')}` |" in text
