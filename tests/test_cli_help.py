"""Every command's --help shows each option's default: walks every subcommand parser (nested ones too)."""

from __future__ import annotations

import argparse
import re

import pytest

from vqclip.cli import build_parser
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
