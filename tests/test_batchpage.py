"""batch.html: a batch's runs ranked by the held-out judge's score of their last scored frame (scores.json), or,
where a run has none, by the guide's final loss (losses.csv), saying so; each sweep value's mean; self-contained.
The runs are folders written by the test (final.png, losses.csv, scores.json in the judge's format)."""

import json
import re

import pytest
import torch
import yaml

from vqclip.cli import main
from vqclip.files.images import save_png
from vqclip.report.batchpage import BATCH_RECORD, rank_runs, read_record, value_means, write_batch_page
from vqclip.runs.batch import RECORD, plan_job, write_grids


def member(root, name, loss=None, judge=None, grey=0.5):
    folder = root / name
    (folder / "frames").mkdir(parents=True)
    save_png(torch.full((1, 3, 8, 8), grey), folder / "final.png")
    if loss is not None:
        (folder / "losses.csv").write_text(f"step,total,clip:a\n0,9.0,9.0\n1,{loss!r},{loss!r}\n")
    if judge is not None:
        frames = [{"step": 0, "file": "frames/000000.png", "judge": 0.0, "aesthetic": None, "guide": None},
                  {"step": 1, "file": "frames/000001.png", "judge": judge, "aesthetic": None, "guide": None}]
        (folder / "scores.json").write_text(json.dumps({"judge": {"model": "j", "aesthetic": None}, "guides": ["g"],
                                                        "frames": frames, "best": None, "stopped_by": None}))
    return folder


def sweep(root, runs):
    """A 2x2 sweep of lr and cutn: runs = {(lr, cutn): (loss, judge)}."""
    entries = []
    for (lr, n), (loss, judge) in runs.items():
        name = f"lr={lr},n={n}"
        member(root, name, loss, judge)
        entries.append({"folder": name, "values": {"optimizer.lr": lr, "cutouts.n": n}, "seed": 1, "done": True})
    (root / BATCH_RECORD).write_text(yaml.safe_dump({"keys": ["optimizer.lr", "cutouts.n"], "runs": entries}))
    return root


RUNS = {(0.1, 2): (0.9, 0.30), (0.1, 4): (0.8, 0.10), (0.2, 2): (0.7, 0.40), (0.2, 4): (0.6, 0.20)}


def test_runs_are_ranked_by_the_judge_when_every_run_has_scores(tmp_path):
    runs, by = rank_runs(sweep(tmp_path, RUNS), read_record(tmp_path))
    assert [r["folder"] for r in runs] == ["lr=0.2,n=2", "lr=0.1,n=2", "lr=0.2,n=4", "lr=0.1,n=4"]
    assert by.startswith("the held-out judge's score") and [r["score"] for r in runs] == [0.4, 0.3, 0.2, 0.1]


def test_without_scores_for_every_run_they_are_ranked_by_the_final_loss_and_it_says_so(tmp_path):
    runs = dict(RUNS)
    runs[0.2, 4] = (0.6, None)
    ranked, by = rank_runs(sweep(tmp_path, runs), read_record(tmp_path))
    assert [r["score"] for r in ranked] == [0.6, 0.7, 0.8, 0.9]  # lower loss first
    assert "final loss (lower is better): 1 of 4 runs have no judge scores" in by


def test_a_run_with_neither_comes_last_and_a_run_not_made_is_left_out(tmp_path):
    sweep(tmp_path, {(0.1, 2): (0.9, None), (0.1, 4): (None, None), (0.2, 2): (0.5, None)})
    record = read_record(tmp_path)
    record["runs"].append({"folder": "never-made", "values": {"optimizer.lr": 0.3}})
    ranked, _ = rank_runs(tmp_path, record)
    assert [r["folder"] for r in ranked] == ["lr=0.2,n=2", "lr=0.1,n=2", "lr=0.1,n=4"]


def test_each_sweep_value_has_its_mean(tmp_path):
    runs, _ = rank_runs(sweep(tmp_path, RUNS), read_record(tmp_path))
    means = value_means(runs, ["optimizer.lr", "cutouts.n"])
    assert {k: [(v, pytest.approx(m), n) for v, m, n in g] for k, g in means.items()} == {
        "optimizer.lr": [("0.2", pytest.approx(0.3), 2), ("0.1", pytest.approx(0.2), 2)],
        "cutouts.n": [("2", pytest.approx(0.35), 2), ("4", pytest.approx(0.15), 2)]}
    assert value_means(runs, ["seed"]) == {}  # the images of one prompt: a value per run, no mean


def test_the_page_ranks_and_is_self_contained(tmp_path):
    text = write_batch_page(sweep(tmp_path, RUNS)).read_text()
    names = re.findall(r"<td>\d+</td><td><img[^>]*></td><td>([^<]+)</td>", text)
    assert names == ["lr=0.2,n=2", "lr=0.1,n=2", "lr=0.2,n=4", "lr=0.1,n=4"]
    assert 'id="means"' in text and "<h3>optimizer.lr</h3>" in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"https?://|<script", text)


def test_a_batch_run_writes_its_page_and_vqclip_report_remakes_it(tmp_path, capsys):
    batch = plan_job({"prompt": "x", "seed": 3, "n": 2, "output": {"dir": str(tmp_path)}}, "f.yaml")

    class Done:
        def __init__(self, m):
            self.final, self.config, self.interrupted = tmp_path / m.name / "final.png", m.cfg, False
    for i, m in enumerate(batch.members):
        member(tmp_path, m.name, loss=0.5 - i / 10)
    write_grids(tmp_path, batch, [Done(m) for m in batch.members])
    text = (tmp_path / "batch.html").read_text()
    assert RECORD == BATCH_RECORD and "final loss (lower is better): 2 of 2 runs have no judge scores" in text
    assert re.findall(r"<td>(seed=\d)</td><td>seed", text) == ["seed=4", "seed=3"]
    (tmp_path / "batch.html").unlink()
    assert main(["report", str(tmp_path)]) == 0 and (tmp_path / "batch.html").is_file()
    assert 'id="means"' not in (tmp_path / "batch.html").read_text()  # one run per seed: no means


def test_a_batch_record_that_is_not_one_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / BATCH_RECORD).write_text("- just a list\n")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a batch record" in err and err.count("\n") == 1
