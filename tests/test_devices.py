"""One run across devices (`devices: [cpu, cpu]`): two gloo processes on CPU, each scoring half of every step's
cutouts, give the image and loss curve of one device scoring them half at a time, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from vqclip.cli import main
from vqclip.files.images import read_metadata
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job

from test_batch import pixels

pytestmark = pytest.mark.slow


def _run(tiny_job, out, devices, steps, callbacks=(), **job):
    job = {**tiny_job, "prompt": "a red circle", "seed": 1, "steps": steps, "threads": 1,
           "output": {"dir": str(out), "video": False, "progress": False}, "devices": devices, **job}
    return run_job(build_config(base=[("job", job)]), extra_callbacks=callbacks)


@pytest.fixture
def two_torch_threads():
    """This process on 2 torch threads while the jobs ask for 1 (the suite runs on 1): the job's count must be the
    one every process runs on, as a Python caller's process has its own (issue 34: through the API, rank 0 ran on
    the caller's count and the bits differed)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_two_gloo_processes_give_the_one_device_image_and_loss_curve(tiny_job, tmp_path, two_torch_threads):
    """Two devices are one device whose cutouts are scored half at a time (micro_batch = cutn / 2), bit for bit,
    for 20 steps: each device fills its own rows of the cutouts' gradient, so their sum is exact. Against one device
    scoring all cutouts in one pass only the float order of the cutouts' gradient sum differs (the issue's check:
    pixels within 1/255, the loss curve within 1e-4, after 20 steps)."""
    import torch

    half, counts = tiny_job["cutouts"]["n"] // 2, []
    two = _run(tiny_job, tmp_path / "two", ["cpu", "cpu"], 20, [lambda e: counts.append(torch.get_num_threads())])
    halves = _run(tiny_job, tmp_path / "halves", [], 20, micro_batch=half)
    assert set(counts) == {1} and torch.get_num_threads() == 2  # the job's threads, then the caller's again
    assert len(two.result.losses) == 20
    assert two.result.losses == halves.result.losses
    assert np.array_equal(pixels(two.final), pixels(halves.final))
    assert (tmp_path / "two" / "state.pt").is_file() and [p.name for p in (tmp_path / "two" / "frames").iterdir()]

    one = _run(tiny_job, tmp_path / "one", [], 20)
    assert np.allclose(one.result.losses, two.result.losses, atol=1e-4, rtol=0)
    diff = np.abs(pixels(one.final).astype(float) - pixels(two.final).astype(float)).mean() / 255
    assert diff < 1 / 255


def test_the_shards_are_the_cutouts_not_copies_of_them(tiny_job, tmp_path, monkeypatch):
    """Were each process to score all cutouts (or the same half), the sum would be twice the one-device loss."""
    from vqclip.optim import scoring

    calls = []
    score = scoring.prompt_loss
    monkeypatch.setattr(scoring, "prompt_loss", lambda embeds, *a: calls.append(len(embeds)) or score(embeds, *a))
    two = _run(tiny_job, tmp_path / "two", ["cpu", "cpu"], 2)
    one = _run(tiny_job, tmp_path / "one", [], 2)
    assert calls[:2] == [tiny_job["cutouts"]["n"] // 2] * 2  # this process (rank 0): its half at each step
    assert abs(one.result.losses[0] - two.result.losses[0]) < 1e-5


@pytest.mark.parametrize("extra, message", [
    (["--candidates", "2"], "error: devices: best of n runs on one device; give one --device, or run a still image"),
    (["--cutn", "1"], "error: devices: 2 devices need at least as many cutouts (cutouts.n is 1)"),
])
def test_what_cannot_run_across_devices_is_one_line_and_exit_2(tiny_args, tmp_path, capsys, extra, message):
    args = ["generate", "a red circle", *tiny_args, "--steps", "1", "--devices", "cpu,cpu", *extra,
            "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message


def test_a_lost_device_process_ends_the_run_with_one_error(tiny_job, tmp_path):
    import multiprocessing

    from vqclip.errors import VqclipError

    def kill_the_others(event):  # rank 1 (spawned by this process) dies after step 2, as a lost device would
        if event.step == 2:
            for child in multiprocessing.active_children():
                child.kill()

    job = {**tiny_job, "prompt": "a red circle", "seed": 1, "steps": 6, "threads": 1, "state_every": 1,
           "output": {"dir": str(tmp_path / "two"), "video": False, "progress": False}, "devices": ["cpu", "cpu"]}
    with pytest.raises(VqclipError, match=r"^devices: a device process ended mid-run .*`vqclip resume` goes on$"):
        run_job(build_config(base=[("job", job)]), extra_callbacks=[kill_the_others])
    assert (tmp_path / "two" / "state.pt").is_file() and (tmp_path / "two" / "frames" / "000000.png").is_file()
    meta = read_metadata(tmp_path / "two" / "final.png")  # the image of the last step scored, marked stopped
    assert meta["stopped"] is True and 2 <= meta["steps_done"] < 6
    assert main(["resume", str(tmp_path / "two"), "--devices", "cpu", "--quiet"]) == 0
    assert read_metadata(tmp_path / "two" / "final.png")["steps_done"] == 6


def test_a_run_stopped_on_two_devices_resumes_on_one_as_the_uninterrupted_run(tiny_job, tmp_path, tiny_args):
    job = {**tiny_job, "prompt": "a red circle", "seed": 1, "steps": 6, "threads": 1,
           "output": {"dir": str(tmp_path / "two"), "video": False, "progress": False}, "devices": ["cpu", "cpu"]}
    stopped = run_job(build_config(base=[("job", job)]), extra_callbacks=[lambda e: e.step == 3])
    assert stopped.interrupted and (tmp_path / "two" / "state.pt").is_file()
    assert main(["resume", str(tmp_path / "two"), "--devices", "cpu", "--quiet"]) == 0
    one = _run(tiny_job, tmp_path / "one", [], 6)
    diff = np.abs(pixels(one.final).astype(float) - pixels(tmp_path / "two" / "final.png").astype(float)).mean()
    assert diff < 1 and not read_metadata(tmp_path / "two" / "final.png")["stopped"]  # below 1/255 of the range
