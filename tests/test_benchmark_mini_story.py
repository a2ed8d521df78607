"""`benchmarks/mini_story.py`: its stories change every attribute from one part to the next, its counts, and one
short run through the command end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "mini_story.py"
_spec = importlib.util.spec_from_file_location("mini_story", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_every_story_has_two_captions_of_the_grammar_that_differ_in_every_attribute():
    from vqclip.mini import world

    assert len(bench.STORIES) == len(set(bench.STORIES)) >= 8
    for story in bench.STORIES:
        first, last = (world.parse_caption(p) for p in bench.parts(story))
        assert first.color != last.color and first.shape != last.shape
        assert (first.background is None) == (last.background is None)  # a story names both backgrounds or neither
        if first.background is not None:
            assert first.background != last.background


def test_summary_counts_the_second_part_and_backgrounds_only_where_named():
    rows = [{"color": True, "background": True, "shape": False, "all": False, "first": False, "seconds": 1.0},
            {"color": True, "background": None, "shape": True, "all": True, "first": False, "seconds": 3.0},
            {"color": False, "background": False, "shape": False, "all": False, "first": True, "seconds": 2.0}]
    s = bench.summary(rows)
    assert s["images"] == 3 and s["with_background"] == 2 and s["seconds"] == 2.0
    assert s["right"] == {"color": 2, "shape": 1, "all": 1, "first": 1, "background": 1}


def test_a_short_run_judges_the_last_frame_against_the_second_part(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert bench.main(["--limit", "1", "--seeds", "0", "--steps", "2", "--json", str(out), "--", "--size", "32",
                       "32", "--candidates", "1", "--cutn", "1"]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["prompt"] == bench.STORIES[0] and row["seed"] == 0 and row["background"] is not None
    assert "1 last frames against their second part" in capsys.readouterr().out
