"""What a run records for its report: losses.csv holds every step's loss per term of the objective (their sum is
the loss the loop minimised), written at each saved frame so a crash leaves it readable up to there, continued by a
resume without a step twice; run.json holds the speed of each process's part of the run."""

import csv
import json

import pytest
import torch

from vqclip.runs.callbacks import StopAfter
from vqclip.runs.jobs import build_config
from vqclip.runs.losslog import LossLog, peak_memory, write_speed
from vqclip.runs.pipeline import run_job
from vqclip.runs.resume import resume_run
from vqclip.optim.loop import StepEvent
from vqclip.report.read import read_losses

STEPS = 5


def job(tiny_job, out, **output):
    return {**tiny_job, "prompt": "a red ball", "seed": 3, "steps": STEPS, "tv_weight": 0.1,
            "output": {"dir": str(out), "progress": False, "video": False, "save_every": 2, "report": False,
                       **output}}


def table(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def whole(tiny_job, tmp_path_factory):
    return run_job(build_config(job(tiny_job, tmp_path_factory.mktemp("losslog") / "whole")))


def test_every_step_has_each_term_and_the_total_is_what_the_loop_minimised(whole):
    terms, rows = read_losses(whole.dir / "losses.csv")
    assert [r["step"] for r in rows] == list(range(STEPS))
    assert terms[0].startswith("clip:") and "tv" in terms  # the objective's terms by their names
    for row in rows:
        assert row["total"] == pytest.approx(sum(row[t] for t in terms), rel=1e-6)
    assert [r["total"] for r in rows] == pytest.approx(whole.result.losses, rel=1e-6)  # the curve the loop returned


def test_run_json_says_the_speed_device_and_memory(whole):
    parts = json.loads((whole.dir / "run.json").read_text())["parts"]
    assert len(parts) == 1
    part = parts[0]
    assert (part["from_step"], part["to_step"], part["steps"], part["device"]) == (0, STEPS, STEPS, "cpu")
    assert part["it_per_s"] == pytest.approx(part["steps"] / part["seconds"], rel=0.02)
    assert part["peak_memory_mb"] > 10 and part["memory"] == "process peak RSS"


def test_a_crash_leaves_the_rows_up_to_the_last_saved_frame(tiny_job, tmp_path):
    def boom(event):
        if event.step == 3:
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        run_job(build_config(job(tiny_job, tmp_path / "r")), extra_callbacks=[boom])
    rows = table(tmp_path / "r" / "losses.csv")
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]  # saved with the frame of step 2; step 3 not yet


def test_a_resume_goes_on_without_a_step_twice_and_ends_as_the_whole_run(tiny_job, whole, tmp_path):
    folder = tmp_path / "r"
    run_job(build_config(job(tiny_job, folder)), extra_callbacks=[StopAfter(3)])  # state.pt at step 3
    with open(folder / "losses.csv", "a") as f:  # rows a killed run wrote past its saved state
        f.write("3,9.0,9.0,0.0\n4,9.0,9.0,0.0\n")
    resume_run(folder)
    assert table(folder / "losses.csv") == table(whole.dir / "losses.csv")
    parts = json.loads((folder / "run.json").read_text())["parts"]
    assert [(p["from_step"], p["to_step"], p["steps"]) for p in parts] == [(0, 3, 3), (3, STEPS, STEPS - 3)]


def event(step, **terms):
    return StepEvent(step, 9, sum(terms.values()), {k: torch.tensor(v) for k, v in terms.items()})


def test_losses_are_written_at_each_frame_and_state_save_only(tmp_path):
    log = LossLog(tmp_path, frames=3, states=5)
    written = []
    for step in range(10):
        log(event(step, a=float(step), b=1.0))
        written.append((tmp_path / "losses.csv").is_file() and len(table(tmp_path / "losses.csv")) - 1)
    # frames at steps 0, 3, 6, 9; states after updates 5 and 10 (the events of steps 4 and 9)
    assert written == [1, 1, 1, 4, 5, 5, 7, 7, 7, 10]


def test_a_run_that_saves_nothing_writes_every_thousand_steps(tmp_path):
    log = LossLog(tmp_path, frames=0, states=0)
    for step in range(999):
        log(event(step, a=1.0))
    assert not (tmp_path / "losses.csv").exists()
    log(event(999, a=1.0))
    assert len(table(tmp_path / "losses.csv")) == 1001 and log.pending == []


def test_a_save_appends_its_rows_and_a_new_column_rewrites_the_file(tmp_path):
    log = LossLog(tmp_path)
    log(event(0, a=1.0))
    log.flush()
    first = (tmp_path / "losses.csv").stat().st_ino
    log(event(1, a=2.0))
    log.flush()
    assert (tmp_path / "losses.csv").stat().st_ino == first  # appended, not written again
    log(event(2, a=2.0, b=1.0))
    log.flush()
    assert (tmp_path / "losses.csv").stat().st_ino != first  # a new column: the whole file, atomically
    assert [r[:3] for r in table(tmp_path / "losses.csv")] == [["step", "total", "a"], ["0", "1.0", "1.0"],
                                                               ["1", "2.0", "2.0"], ["2", "3.0", "2.0"]]


def test_a_term_that_appears_later_gets_its_column_and_earlier_rows_leave_it_empty(tmp_path):
    log = LossLog(tmp_path)
    log(event(0, a=1.0))
    log.flush()  # a save before the term exists
    log(event(1, a=2.0, guide=0.5))
    log.flush()
    assert table(tmp_path / "losses.csv") == [["step", "total", "a", "guide"], ["0", "1.0", "1.0", ""],
                                              ["1", "2.5", "2.0", "0.5"]]


def test_trial_and_restyle_steps_count_for_speed_but_are_not_the_runs_curve(tmp_path):
    log = LossLog(tmp_path)
    from dataclasses import replace
    log(replace(event(0, a=1.0), trial=4))
    log(replace(event(0, a=1.0), frame=2))
    log(event(5, a=3.0))
    log.flush()
    assert [r[0] for r in table(tmp_path / "losses.csv")[1:]] == ["5"] and log.events == 3


def test_a_resumed_part_replaces_a_later_part_of_run_json(tmp_path):
    for first in (0, 10, 20, 10):
        write_speed(tmp_path, {"from_step": first, "to_step": first + 10})
    parts = json.loads((tmp_path / "run.json").read_text())["parts"]
    assert [p["from_step"] for p in parts] == [0, 10]


def test_peak_memory_on_cuda_is_torchs_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 3 * 2**20)
    assert peak_memory(torch.device("cuda:0")) == (3.0, "cuda max allocated")
