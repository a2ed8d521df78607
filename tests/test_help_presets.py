"""`--help` says which defaults apply: the listed ones are the default preset's, and every default a built-in preset
replaces (mini's 100 steps, 64x64, 8 cutouts, best of 6 ...) is shown beside it, read here from presets.yaml itself."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from vqclip.cli import build_parser
from vqclip.config import GenerateConfig
from vqclip.config.fields import walk

PRESETS = Path(__file__).resolve().parent.parent / "vqclip" / "models" / "presets.yaml"


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


def shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def helps(text: str) -> dict[str, str]:
    """Each option's help in a --help text, its lines joined: flag -> text."""
    out, flag = {}, None
    for line in text.splitlines():
        match = re.match(r"\s{2}(--[\w-]+)", line)
        if match:
            flag = match.group(1)
            out[flag] = line
        elif flag and line.startswith(" " * 10):
            out[flag] += " " + line.strip()
        else:
            flag = None
    return {f: " ".join(t.split()) for f, t in out.items()}


def test_generate_help_shows_each_presets_own_defaults_beside_the_listed_ones():
    text = build_parser().commands["generate"].format_help()
    assert "The defaults listed are those of the default preset (imagenet-16384)" in " ".join(text.split())
    lines = helps(text)
    options = {o.key: o for o in walk(GenerateConfig)}
    seen = 0
    for name, preset in yaml.safe_load(PRESETS.read_text())["presets"].items():
        for key, value in flat(preset.get("defaults") or {}).items():
            o = options.get(key)
            if o is None or not o.flag or key.startswith("guide"):
                continue
            default = list(o.default) if isinstance(o.default, tuple) else o.default
            mention = f"{name}: {shown(value)}"
            if value == default:  # the same as listed: nothing to add
                assert mention not in lines[o.flag], lines[o.flag]
            else:
                assert mention in lines[o.flag], (o.flag, lines[o.flag])
                seen += 1
    assert seen >= 5  # mini's steps, size, cutouts, init, candidates ...
    assert "(default: 300; mini: 100)" in lines["--steps"]
