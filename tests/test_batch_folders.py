"""A batch's folders: named by the values each job differs in (numbered apart where two slug alike), never made over
a batch or a run, each member's folder checked before anything runs, and batch.yaml saying which runs are done.
The runs here are stand-ins that write a final.png: the batch machinery, not the generation, is under test."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.files.images import save_png
from vqclip.runs.batch import describe, images_of, plan_job
from vqclip.runs.plan import place, run_plan


@dataclass
class Done:
    final: Path
    config: object
    interrupted: bool = False


def stand_in(stop_at: int = -1):
    """A run that writes a grey final.png into its folder; the one numbered `stop_at` is stopped."""
    made = []

    def run(cfg, **kwargs):
        folder = Path(cfg.output.dir)
        folder.mkdir(parents=True)
        final = save_png(torch.full((1, 3, 8, 8), 0.5), folder / "final.png")
        made.append(folder.name)
        return Done(final, cfg, interrupted=len(made) - 1 == stop_at)
    return run, made


def test_values_that_slug_alike_get_numbered_folders(tmp_path):
    batch = plan_job({"prompt": "x", "sweep": {"prompt": ["a b", "a-b", "A B!"], "optimizer.lr": [0.1]}}, "f.yaml")
    assert [m.name for m in batch.members] == ["prompt=a-b,lr=0.1", "prompt=a-b,lr=0.1-2", "prompt=a-b,lr=0.1-3"]
    assert [m.cfg.prompt for m in batch.members] == ["a b", "a-b", "A B!"]


def test_the_images_of_one_prompt_are_seed_or_rank_folders():
    assert images_of(merge_layers([("t", {"prompt": "x", "seed": 5})])) is None
    seeds = images_of(merge_layers([("t", {"prompt": "x", "seed": 5, "n": 2})]))
    assert [(m.name, m.cfg.seed, m.cfg.n) for m in seeds.members] == [("seed=5", 5, 1), ("seed=6", 6, 1)]
    best = images_of(merge_layers([("t", {"prompt": "x", "seed": 5, "candidates": {"n": 4, "keep": 3}})]))
    assert [(m.name, m.cfg.seed, m.cfg.candidates.rank, m.cfg.candidates.keep) for m in best.members] == [
        ("best=1", 5, 0, 1), ("best=2", 5, 1, 1), ("best=3", 5, 2, 1)]
    assert describe(seeds)[1].endswith("/seed=6  seed=6") and describe(seeds)[0].startswith("outputs/<time>-x/")


def test_a_batch_runs_into_its_folders_and_records_what_is_done(tmp_path):
    batch = plan_job({"prompt": "x", "seed": 3, "n": 3, "output": {"dir": str(tmp_path / "b")}}, "f.yaml")
    run, made = stand_in(stop_at=1)
    placed = place([batch])
    runs, root = run_plan(placed, run), placed[0].root
    assert root == tmp_path / "b" and made == ["seed=3", "seed=4"]  # stopped after the stopped run
    record = yaml.safe_load((root / "batch.yaml").read_text())
    assert [(r["folder"], r["seed"], r["done"]) for r in record["runs"]] == [
        ("seed=3", 3, True), ("seed=4", 4, False), ("seed=5", 5, False)]
    assert record["grids"] == ["grid.png"] and (root / "grid.png").is_file()


@pytest.mark.parametrize("there", ["job.yaml", "final.png", "frames", "seed=4/frames", "seed=4/final.png"])
def test_a_batch_is_never_made_over_a_run(tmp_path, there):
    root = tmp_path / "b"
    (root / there).parent.mkdir(parents=True, exist_ok=True)
    (root / there).mkdir() if there.endswith("frames") else (root / there).write_text("kept")
    batch = plan_job({"prompt": "x", "seed": 3, "n": 2, "output": {"dir": str(root)}}, "f.yaml")
    run, made = stand_in()
    with pytest.raises(VqclipError, match="already holds a run; choose another --out"):
        run_plan(place([batch]), run)
    assert made == [] and not (root / "seed=3").exists()  # refused before any run
