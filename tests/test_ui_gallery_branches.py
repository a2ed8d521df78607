"""The gallery lists a branch (a run whose job.yaml says `branch: {parent, step}`) under its parent, by the step it
branched at, branches of branches under theirs; a branch whose parent is gone, names itself, or loops with another
stays listed at the top; a `branch:` that is not a parent's name is ignored."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from test_ui_gallery import run

from vqclip.ui.gallery import list_runs


def job(outputs: Path, name: str, branch=None, mtime: float = 1000.0, final: bool = True) -> Path:
    """A run folder: a final.png (or none: still running) and a job.yaml naming its parent when given."""
    folder = run(outputs, name, f"prompt of {name}") if final else outputs / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.yaml").write_text(yaml.safe_dump({"prompt": f"prompt of {name}", "seed": 1,
                                                     **({"branch": branch} if branch is not None else {})}))
    os.utime(folder, (mtime, mtime))
    return folder


def shape(runs: list[dict]) -> list:
    """(name, branch step, its branches) of each listed run, down the tree."""
    return [(r["name"], r.get("branch_step"), shape(r.get("branches", []))) for r in runs]


def test_branches_are_listed_under_their_parent_by_step_and_under_branches(tmp_path):
    out = tmp_path / "outputs"
    job(out, "a", mtime=1000)
    job(out, "a-b1", {"parent": "a", "step": 20}, mtime=3000)
    job(out, "a-b2", {"parent": "a", "step": 5}, mtime=2000, final=False)  # still running: its job.yaml says it
    job(out, "a-b1-b1", {"parent": "a-b1", "step": 30}, mtime=4000)
    job(out, "z", mtime=1500)
    runs = list_runs(out)
    assert shape(runs) == [("z", None, []), ("a", None, [("a-b2", 5, []), ("a-b1", 20, [("a-b1-b1", 30, [])])])]
    parent = runs[1]
    assert parent["branches"][0]["parent"] == "a" and parent["branches"][0]["running"] is True
    assert parent["branches"][1]["prompt"] == "prompt of a-b1" and parent["branches"][1]["final"]


def test_a_branch_without_its_parent_or_with_a_damaged_record_stays_at_the_top(tmp_path):
    out = tmp_path / "outputs"
    job(out, "orphan", {"parent": "gone", "step": 3}, mtime=1000)
    job(out, "self", {"parent": "self", "step": 3}, mtime=2000)
    job(out, "x", {"parent": "y", "step": 1}, mtime=3000)  # a loop: x's parent y, y's parent x
    job(out, "y", {"parent": "x", "step": 1}, mtime=4000)
    job(out, "p", mtime=5000)
    job(out, "odd", {"parent": ["p"], "step": 1}, mtime=6000)
    job(out, "flag", {"parent": "p", "step": True}, mtime=7000)
    job(out, "empty", {"parent": "", "step": 2}, mtime=8000)
    (out / "bad").mkdir()
    (out / "bad" / "job.yaml").write_text("branch: [unclosed")
    runs = list_runs(out)
    assert [r["name"] for r in runs] == ["bad", "empty", "odd", "p", "self", "orphan", "y", "x"]  # newest first
    assert shape([r for r in runs if r["name"] == "p"]) == [("p", None, [("flag", None, [])])]
    assert {r["name"]: r.get("parent") for r in runs if r["name"] in ("orphan", "self", "odd", "empty")} == \
        {"orphan": "gone", "self": "self", "odd": None, "empty": None}
