"""Batches: --n seeds, candidates.keep's best starts of one batch, sweeps (expansion, names, dry run), the labelled
grid of their final images, and the one-line errors for bad batch input."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.config import merge_layers
from vqclip.config.sweep import expand
from vqclip.errors import VqclipError
from vqclip.files.grid import contact_sheet
from vqclip.files.images import read_metadata


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def write_job(tmp_path, job, name="job.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


SWEEP = {"seed": [1, 2, 3], "optimizer.lr": [0.05, 0.1], "prompt": ["a red circle", "a blue square"]}


def test_a_sweep_is_the_cartesian_product_in_order_first_key_slowest():
    jobs = expand({"steps": 5, "optimizer": {"name": "sgd"}, "sweep": SWEEP}, "f.yaml")
    assert len(jobs) == 12
    want = [(s, lr, p) for s in SWEEP["seed"] for lr in SWEEP["optimizer.lr"] for p in SWEEP["prompt"]]
    assert [(v["seed"], v["optimizer.lr"], v["prompt"]) for v, _ in jobs] == want
    for values, layer in jobs:  # each layer is the job with its values set, the other keys kept, no sweep left
        assert layer["seed"] == values["seed"] and layer["prompt"] == values["prompt"] and "sweep" not in layer
        assert layer["optimizer"] == {"name": "sgd", "lr": values["optimizer.lr"]} and layer["steps"] == 5
    assert expand({"steps": 5}, "f.yaml") == [({}, {"steps": 5})]


def test_dry_run_lists_each_job_by_folder_and_values_without_models(tmp_path, tiny_job, capsys, monkeypatch):
    def no_models(*args, **kwargs):
        raise AssertionError("a dry run must load no model")

    monkeypatch.setattr("vqclip.runs.pipeline.load_models", no_models)
    path = write_job(tmp_path, {**tiny_job, "steps": 2, "output": {"dir": str(tmp_path / "b")}, "sweep": SWEEP})
    assert main(["run", "--dry-run", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 12 and not (tmp_path / "b").exists()
    assert lines[0] == f"{tmp_path / 'b'}/seed=1,lr=0.05,prompt=a-red-circle  seed=1 optimizer.lr=0.05 " \
                       "prompt='a red circle'"
    assert lines[-1].startswith(f"{tmp_path / 'b'}/seed=3,lr=0.1,prompt=a-blue-square  seed=3 optimizer.lr=0.1")
    assert len({line.split()[0] for line in lines}) == 12
    seeds = write_job(tmp_path, {**tiny_job, "prompt": "x", "n": 2, "seed": 7}, "n.yaml")  # `n:` in a job file
    assert main(["run", "--dry-run", str(seeds)]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()] == \
        ["outputs/<time>-x/seed=7", "outputs/<time>-x/seed=8"]


def test_dry_run_imports_no_torch(tmp_path, tiny_job):
    path = write_job(tmp_path, {**tiny_job, "prompt": "x", "sweep": {"seed": [1, 2]}})
    code = (f"import sys\nfrom vqclip.cli import main\nassert main(['run', '--dry-run', {str(path)!r}]) == 0\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "False", proc.stderr


def test_contact_sheet_places_each_tile_and_labels_the_margins():
    rng = np.random.default_rng(0)
    tiles = [[Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)) for _ in range(3)] for _ in range(2)]
    sheet, layout = contact_sheet(tiles, ["lr=0.05", "lr=0.1"], ["seed=1", "seed=2", "seed=3"])
    left, top = sheet.width - 3 * 30, sheet.height - 2 * 20
    assert left > 0 and top > 0 and (layout.left, layout.top) == (left, top)
    page = np.asarray(sheet)
    for r in range(2):
        for c in range(3):
            tile = page[top + 20 * r: top + 20 * (r + 1), left + 30 * c: left + 30 * (c + 1)]
            assert np.array_equal(tile, np.asarray(tiles[r][c]))
    assert (page[top:, :left] < 128).any() and (page[:top, left:] < 128).any()  # text in both margins
    bare, layout = contact_sheet([tiles[0]])
    assert bare.size == (90, 20) and (layout.left, layout.top) == (0, 0)


def test_a_2x2_sweep_writes_4_runs_and_a_grid_of_their_finals(tmp_path, tiny_job, capsys):
    out = tmp_path / "batch"
    job = {**tiny_job, "prompt": "a red circle", "steps": 2, "output": {"dir": str(out), "video": False,
                                                                        "progress": False},
           "sweep": {"optimizer.lr": [0.05, 0.2], "seed": [1, 2]}}
    assert main(["run", str(write_job(tmp_path, job))]) == 0
    names = [[f"lr={lr},seed={s}" for s in (1, 2)] for lr in (0.05, 0.2)]
    assert sorted(p.name for p in out.iterdir()) == sorted(["batch.yaml", "batch.html", "grid.png", *names[0],
                                                            *names[1]])
    for r, lr in enumerate((0.05, 0.2)):
        for c, s in enumerate((1, 2)):
            meta = read_metadata(out / names[r][c] / "final.png")
            assert meta["seed"] == s and meta["config"]["optimizer"]["lr"] == lr
    grid = pixels(out / "grid.png")
    left, top = grid.shape[1] - 2 * 32, grid.shape[0] - 2 * 32
    assert left > 0 and top > 0
    for r in range(2):
        for c in range(2):
            tile = grid[top + 32 * r: top + 32 * (r + 1), left + 32 * c: left + 32 * (c + 1)]
            assert np.array_equal(tile, pixels(out / names[r][c] / "final.png"))
    assert not np.array_equal(pixels(out / names[0][0] / "final.png"), pixels(out / names[1][1] / "final.png"))
    record = yaml.safe_load((out / "batch.yaml").read_text())
    assert [r["folder"] for r in record["runs"]] == [*names[0], *names[1]] and all(r["done"] for r in record["runs"])


def test_a_third_key_makes_one_grid_per_value(tmp_path, tiny_job):
    from vqclip.runs.batch import plan_job, sheets

    batch = plan_job({**tiny_job, "prompt": "x", "sweep": {"seed": [1, 2], "steps": [1, 2, 3],
                                                            "prompt": ["a", "b"]}}, "f.yaml")
    grids = sheets(batch)
    assert [g[0] for g in grids] == ["grid-prompt=a.png", "grid-prompt=b.png"]
    name, title, rows, cols, cells = grids[1]
    assert title == "prompt=b" and rows == ["seed=1", "seed=2"] and cols == ["steps=1", "steps=2", "steps=3"]
    assert all(batch.members[i].values == {"seed": 1 + r, "steps": 1 + c, "prompt": "b"}
               for (r, c), i in cells.items()) and len(cells) == 6


def test_n_3_with_seed_5_makes_seeds_5_6_7(tmp_path, tiny_args, monkeypatch):
    import vqclip.nets.load as load

    loads, real = [], load.load_vqgan
    monkeypatch.setattr(load, "load_vqgan", lambda *a, **k: loads.append(a) or real(*a, **k))
    out = tmp_path / "b"
    assert main(["generate", "a red circle", *tiny_args, "--steps", "2", "--no-video", "--n", "3", "--seed", "5",
                 "--out", str(out)]) == 0
    for s in (5, 6, 7):
        run = out / f"seed={s}"
        assert read_metadata(run / "final.png")["seed"] == s
        job = yaml.safe_load((run / "job.yaml").read_text())
        assert job["seed"] == s and job["n"] == 1  # each run is one image: --from it makes that image again
    assert Image.open(out / "grid.png").width >= 2 * 32 and len(loads) == 1  # the models loaded once for the batch
    images = [pixels(out / f"seed={s}" / "final.png") for s in (5, 6, 7)]
    assert not np.array_equal(images[0], images[1])


def test_n_without_a_seed_draws_one_and_counts_up_from_it(tiny_job):
    from vqclip.runs.batch import images_of

    batch = images_of(merge_layers([("t", {**tiny_job, "prompt": "x", "n": 4})]))
    seeds = [m.cfg.seed for m in batch.members]
    assert seeds == list(range(seeds[0], seeds[0] + 4)) and all(m.cfg.n == 1 for m in batch.members)
    assert [m.name for m in batch.members] == [f"seed={s}" for s in seeds]


def test_candidates_keep_goes_on_with_the_n_best_starts_of_one_batch(tiny_job, tmp_path):
    """keep 3 of 5 starts: the images go on from the starts ranked 1, 2, 3 by `start_scores`, all of one batch whose
    trials run once, and each image equals a job run alone with that rank (`candidates.rank`)."""
    from test_bestofn import best_start
    from vqclip.nets.device import seeded
    from vqclip.nets.load import ModelCache
    from vqclip.runs.batch import images_of
    from vqclip.runs.callbacks import with_trials
    from vqclip.runs.pipeline import run_job
    from vqclip.runs.plan import place, run_plan

    layer = {**tiny_job, "prompt": "a red circle", "steps": 4, "seed": 3, "n": 3,
             "candidates": {"n": 5, "steps": 2, "views": 4, "keep": 3},
             "output": {"dir": str(tmp_path / "b"), "video": False, "progress": False, "save_every": 0}}
    cfg = merge_layers([("t", layer)])
    batch = images_of(cfg)
    assert [m.name for m in batch.members] == ["best=1", "best=2", "best=3"]
    cache, trial_steps = ModelCache(), []
    count = with_trials(lambda e: trial_steps.append(e.step) if e.trial else None)
    runs = run_plan(place([batch]), run_job, cache=cache, callbacks=[count])
    assert trial_steps == [0, 1]  # the trials of the 5 starts ran once for the three images
    models = cache.models(__import__("vqclip.models.resolve", fromlist=["job_files"]).job_files(cfg),
                          torch.device("cpu"))
    with seeded(torch.device("cpu"), 3):
        _, scores = best_start(cfg, models, torch.device("cpu"), 3)
    order = list(np.argsort(scores))
    assert [r.result.start for r in runs] == order[:3] and len(set(scores)) == 5
    alone = run_job(merge_layers([("t", {**layer, "n": 1, "candidates": {**layer["candidates"], "keep": 1,
                                                                          "rank": 2}, "output": {
        **layer["output"], "dir": str(tmp_path / "alone")}})]))
    assert alone.result.start == order[2] and torch.equal(alone.result.z, runs[2].result.z)
    assert (tmp_path / "b" / "grid.png").is_file()


def test_a_sweep_value_of_the_wrong_type_names_the_job(tmp_path, tiny_job):
    from vqclip.runs.batch import plan_job

    with pytest.raises(VqclipError, match=r"f.yaml steps=many: steps: "):
        plan_job({**tiny_job, "prompt": "x", "sweep": {"steps": [2, "many"]}}, "f.yaml")


def _bad(tmp_path, tiny_job):
    made = []

    def sweep(s):
        made.append(s)
        return str(write_job(tmp_path, {**tiny_job, "prompt": "x", "sweep": s}, f"s{len(made)}.yaml"))

    return {
        "unknown key": (["run", sweep({"optimizer.lrr": [1]})],
                        "job 1: sweep: unknown key 'optimizer.lrr'; did you mean 'optimizer.lr'?"),
        "empty list": (["run", sweep({"seed": []})], "sweep.seed: expected a non-empty list of values"),
        "not a list": (["run", sweep({"seed": 5})], "sweep.seed: expected a non-empty list of values, e.g. [1, 2], "
                                                    "got 5"),
        "wrong type": (["run", sweep({"steps": ["many"]})], "steps=many: steps: "),
        "not a mapping": (["run", sweep([1, 2])], "sweep: expected a mapping of job keys to lists of values"),
        "n in a sweep": (["run", str(write_job(tmp_path, {**tiny_job, "prompt": "x", "n": 2,
                                                          "sweep": {"steps": [1, 2]}}, "n.yaml"))],
                         "cannot be combined with sweep"),
        "sweep n": (["run", sweep({"n": [1, 2]})], "sweep: n cannot be swept"),
        "n 0": (["generate", "x", "--model", "mini", "--n", "0"], "n: must be >= 1"),
        "keep over candidates": (["generate", "x", "--model", "mini", "--candidates", "2", "--set",
                                  "candidates.keep=3"], "candidates.keep: must be in 1..candidates.n (2"),
        "keep and another n": (["generate", "x", "--model", "mini", "--candidates", "4", "--n", "2", "--set",
                                "candidates.keep=3"], "set n to the same number"),
        "sweep to --config": (["generate", "--config", sweep({"seed": [1]})], "holds a sweep"),
    }


@pytest.mark.parametrize("case", ["unknown key", "empty list", "not a list", "wrong type", "not a mapping",
                                  "n in a sweep", "sweep n", "n 0", "keep over candidates", "keep and another n",
                                  "sweep to --config"])
def test_bad_batch_input_is_one_line_and_exit_2(tmp_path, tiny_job, capsys, case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, expected = _bad(tmp_path, tiny_job)[case]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "outputs").exists()


def test_a_stopped_batch_writes_the_grid_and_record_of_the_runs_made(tmp_path, tiny_job):
    """Ctrl-C during the second of three runs: that run stops (its final.png kept), the third is not made, and the
    grid shows the two made (a square of 2 x 2 cells, the third grey) and batch.yaml says which finished."""
    import threading

    from vqclip.files.grid import EMPTY
    from vqclip.runs.batch import images_of
    from vqclip.runs.pipeline import run_job
    from vqclip.runs.plan import place, run_plan

    flag = threading.Event()
    out = tmp_path / "b"
    cfg = merge_layers([("t", {**tiny_job, "prompt": "x", "steps": 3, "seed": 1, "n": 3,
                               "output": {"dir": str(out), "video": False, "progress": False}})])

    def one(c, **kwargs):
        run = run_job(c, **kwargs)
        flag.set()  # as Ctrl-C would, during the next run
        return run

    placed = place([images_of(cfg)])
    runs, root = run_plan(placed, one, stop=flag), placed[0].root
    assert root == out and len(runs) == 2 and not runs[0].interrupted and runs[1].interrupted
    assert not (out / "seed=3").exists()
    record = yaml.safe_load((out / "batch.yaml").read_text())
    assert [r["done"] for r in record["runs"]] == [True, False, False]
    grid = pixels(out / "grid.png")
    assert grid.shape[1] % 2 == 0 and grid.shape[0] % 2 == 0
    high, wide = grid.shape[0] // 2, grid.shape[1] // 2  # a cell: a tile and its caption, as wide as the caption
    assert high > 32 and wide >= 32
    assert np.array_equal(grid[:32, :32], pixels(out / "seed=1" / "final.png"))
    assert np.array_equal(grid[:32, wide:wide + 32], pixels(out / "seed=2" / "final.png"))
    assert (grid[high:high + 32, :32] == EMPTY[0]).all()
    assert (grid[32:high] < 128).any()  # the captions


def test_a_pipeline_call_refuses_a_batch_rather_than_making_one_image(tiny_job):
    from vqclip.api import Pipeline

    pipe = Pipeline([("tiny", tiny_job)], device="cpu")  # no model is loaded before the job is checked
    for keys in ({"n": 2}, {"candidates": {"n": 3, "keep": 2}}):  # (Pipeline.run makes the batch, as `vqclip run`
        with pytest.raises(VqclipError, match="make a batch of images"):  # does: tests/test_plan.py)
            pipe("x", **keys)


def test_the_bar_of_an_image_going_on_from_shared_trials_starts_past_them(capsys):
    from vqclip.optim.loop import StepEvent
    from vqclip.runs.callbacks import ProgressBar

    bar = ProgressBar(6)
    for step in (3, 4, 5):  # the trials (steps 0-2) ran for another image of the batch
        bar(StepEvent(step, 6, 1.0))
    assert bar.bar.n == bar.bar.total == 6
    bar.close()
