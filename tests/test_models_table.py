"""`vqclip models` shows each preset's "WHAT IT IS" whole, wrapped under its column to the terminal's width, never
cut; the descriptions are read here from presets.yaml itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vqclip.cli import main

PRESETS = Path(__file__).resolve().parent.parent / "vqclip" / "models" / "presets.yaml"


@pytest.mark.parametrize("columns", [90, 140])
def test_the_listing_wraps_what_each_preset_is_under_its_column(tmp_path, monkeypatch, capsys, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["models", "--home", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("NAME "))
    column = lines[start].index("WHAT IT IS")
    table = lines[start + 1:lines.index("", start)]
    described, name = {}, None
    for line in table:
        assert len(line) <= columns, line
        if line[:column].strip():
            name = line.split()[0]
            described[name] = line[column:]
        else:
            assert line[:column] == " " * column  # a continuation: under the column
            described[name] += " " + line[column:]
    for preset, spec in yaml.safe_load(PRESETS.read_text())["presets"].items():
        assert described[preset] == " ".join(spec["description"].split()), preset
