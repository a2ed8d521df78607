"""What runs on a cluster's workers, without Ray: a worker runs a new job into a folder of its own and sends back its
files (job.yaml naming the driver's folder), runs one straight into a shared folder, and resumes a stopped one from
the files it is sent to the image of the uninterrupted run; the step reports and the progress board."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from vqclip.optim.loop import StepEvent
from vqclip.runs import clusterwork as w
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job


def job_cfg(tiny_job, out=None, **keys):
    return build_config(base=[("job", {**tiny_job, "prompt": "a red circle", "seed": 3, "steps": 3, "threads": 1,
                                       "state_every": 1, "output": {"video": False, "progress": False,
                                                                    **({"dir": str(out)} if out else {})}, **keys})])


def image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def worker():
    return w.Worker(threads=1)


def test_folder_files_are_every_file_but_temporary_writes(tmp_path):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "000000.png").write_bytes(b"0")
    (tmp_path / "final.png").write_bytes(b"F")
    (tmp_path / ".state.tmp-123.pt").write_bytes(b"half")
    (tmp_path / "frames" / ".000001.png.tmp-9").write_bytes(b"half")
    assert w.folder_files(tmp_path) == {"final.png": b"F", "frames/000000.png": b"0"}


def test_a_new_job_comes_back_as_its_files_naming_the_drivers_folder(worker, tiny_job, tmp_path):
    task = w.Task("k", job_cfg(tiny_job), "outputs/k", str(tmp_path / "driver" / "k"))
    out = worker.run(task)
    assert (out["seed"], out["steps"], out["stopped"]) == (3, 3, False)
    assert {"final.png", "job.yaml", "state.pt", "frames/000000.png"} <= set(out["files"])
    assert yaml.safe_load(out["files"]["job.yaml"])["output"]["dir"] == "outputs/k"
    assert not (tmp_path / "driver").exists()  # nothing written on the driver's side by the worker


def test_a_shared_folder_is_written_in_place_and_a_stopped_run_resumes_to_the_uninterrupted_image(
        worker, tiny_job, tmp_path):
    shared = worker.run(w.Task("t", job_cfg(tiny_job), "whole", str(tmp_path / "whole"), shared=True))
    assert shared["files"] is None and shared["steps"] == 3 and (tmp_path / "whole" / "job.yaml").is_file()
    stopped = run_job(job_cfg(tiny_job, tmp_path / "stopped"), extra_callbacks=[lambda e: e.step == 1])
    assert stopped.interrupted
    files = w.folder_files(tmp_path / "stopped")
    out = worker.run(w.Task("s", job_cfg(tiny_job), "stopped", str(tmp_path / "unused"), resume=True, files=files))
    assert (out["steps"], out["stopped"]) == (3, False)
    assert np.array_equal(image(out["files"]["final.png"]), image((tmp_path / "whole" / "final.png").read_bytes()))
    assert yaml.safe_load(out["files"]["job.yaml"])["output"]["dir"] == "stopped"
    assert worker.loads() == 1  # one model set, loaded once for all its jobs


def test_steps_are_reported_at_most_every_half_second_and_at_the_last(monkeypatch):
    now, calls = [10.0], []
    monkeypatch.setattr(w.time, "monotonic", lambda: now[0])
    board = SimpleNamespace(report=SimpleNamespace(remote=lambda *a: calls.append(a)))
    report = w.StepReport(board, "k")
    for step, t in ((0, 0.0), (1, 0.2), (2, 0.49), (3, 0.5), (4, 0.6), (5, 0.7)):
        now[0] = 10.0 + t
        report(StepEvent(step, 5, 1.0, frame=2 if step == 5 else None))
    assert [c[1] for c in calls] == [0, 3, 5] and calls[-1] == ("k", 5, 5, 2)
    progress = w.Progress()
    progress.report("a", 3, 10)
    progress.report("b", 4, 10, frame=2)
    progress.report("a", 4, 10)
    assert progress.snapshot() == {"a": "4/10", "b": "frame 2 4/10"}
