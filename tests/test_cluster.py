"""`vqclip run --ray`: the jobs of a job file on a local Ray cluster (2 CPUs, one shared by the module) land where
`vqclip run` puts them, with the same images; a bad job or a lost worker costs only its own job; a re-run skips
finished runs and resumes stopped ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.files.images import read_metadata

from cluster_hooks import KillOnce
from test_batch import pixels, write_job

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
HERE = Path(__file__).parent

JOBS = [{"prompt": "a red circle", "seed": 1, "output": {"dir": "a"}},
        {"prompt": "a blue square", "seed": 2, "output": {"dir": "b"}},
        {"prompt": "a red square", "seed": 3, "output": {"dir": "c"}},
        {"prompt": "a blue circle", "seed": 4, "output": {"dir": "d"}},
        {"prompt": "a green circle", "output": {"dir": "sweep"}, "sweep": {"seed": [5, 6]}}]
RUNS = ["a", "b", "c", "d", "sweep/seed=5", "sweep/seed=6"]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray with 2 CPUs for the module; its workers import this checkout and tests/ (the step hooks); every
    Ray process it started is gone afterwards."""
    ray = pytest.importorskip("ray", reason="the cluster runner needs Ray: pip install 'vqclip[ray]'")
    psutil = pytest.importorskip("psutil")
    env = {"PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")]),
           "VQCLIP_HOME": str(tmp_path_factory.mktemp("ray-home"))}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    others = {p.pid for p in psutil.Process().children(recursive=True)}  # not Ray's (e.g. the page's checkers)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield ray
    finally:
        ray.shutdown()
        for k, v in before.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    deadline = time.monotonic() + 30
    while (left := [p for p in psutil.Process().children(recursive=True) if p.pid not in others and p.is_running()
                    and p.status() != psutil.STATUS_ZOMBIE]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"Ray processes left running: {[p.name() for p in left]}"


@pytest.fixture(scope="module")
def job_file(tmp_path_factory, tiny_job):
    """Four jobs and a sweep of two seeds, 3 steps each at 32x32, into folders relative to the working folder; job d
    edits an image under a mask with its prompt aimed at a region mask (files beside the job file), which a worker
    must read and keep as the run on one machine does."""
    folder = tmp_path_factory.mktemp("jobs")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "photo.png")
    mask, left = np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24], left[:, :16] = 255, 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(left).save(folder / "left.png")
    jobs = [*JOBS[:3], {**JOBS[3], "prompt": f"a blue circle:1@{folder / 'left.png'}",
                        "init": {"image": str(folder / "photo.png"), "mask": str(folder / "mask.png")}}, *JOBS[4:]]
    job = {**tiny_job, "steps": 3, "threads": 1, "output": {"video": False, "progress": False}, "jobs": jobs}
    return write_job(folder, job)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, job_file, run_reports):
    """The same file run by `vqclip run` without Ray, one thread, in a folder of its own; with its report.html, as
    the workers (processes of their own, outside the suite's switch) write theirs."""
    where = tmp_path_factory.mktemp("reference")
    cwd = os.getcwd()
    os.chdir(where)
    try:
        assert main(["run", str(job_file)]) == 0
    finally:
        os.chdir(cwd)
    return where


def cluster_run(where: Path, job_file: Path, capsys, **options):
    """`run_cluster` of the file's jobs from the folder `where` (as `vqclip run FILE --ray` there); the report and
    what it printed."""
    from vqclip.runs.batch import plan_job
    from vqclip.runs.cluster import run_cluster
    from vqclip.runs.jobs import jobs_from_file

    cwd = os.getcwd()
    os.chdir(where)
    try:
        plans = [plan_job(job, f"{job_file} job {i + 1}") for i, job in enumerate(jobs_from_file(job_file))]
        report = run_cluster(plans, **options)
    finally:
        os.chdir(cwd)
    return report, capsys.readouterr().err


def test_four_jobs_and_a_sweep_make_the_images_of_vqclip_run_with_one_load_per_worker(
        ray_cluster, job_file, reference, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(job_file), "--ray"]) == 0
    err = capsys.readouterr().err
    assert "cluster: 6 done, 0 skipped, 0 failed; 2 model loads" in err  # two workers, one model set each
    for run in RUNS:
        assert np.array_equal(pixels(tmp_path / run / "final.png"), pixels(reference / run / "final.png")), run
        assert yaml.safe_load((tmp_path / run / "job.yaml").read_text())["output"]["dir"] == run
        assert sorted(p.name for p in (tmp_path / run).iterdir()) == sorted(p.name for p in (reference / run).iterdir())
    assert np.array_equal(pixels(tmp_path / "sweep" / "grid.png"), pixels(reference / "sweep" / "grid.png"))
    edit = yaml.safe_load((tmp_path / "d" / "job.yaml").read_text())  # the edit kept its mask in its own folder
    assert Path(edit["init"]["mask"]).resolve() == (tmp_path / "d" / "mask.png").resolve()
    assert np.array_equal(pixels(tmp_path / "d" / "mask.png"), pixels(job_file.parent / "mask.png"))
    from vqclip.optim.prompts import parse_prompts

    [region] = [p.region for p in parse_prompts(edit["prompt"]) if p.region]  # the region mask's copy, landed too
    assert Path(region).resolve() == (tmp_path / "d" / "regions" / "1.png").resolve()
    assert np.array_equal(pixels(region), pixels(job_file.parent / "left.png"))
    record = yaml.safe_load((tmp_path / "sweep" / "batch.yaml").read_text())
    assert [r["seed"] for r in record["runs"]] == [5, 6] and all(r["done"] for r in record["runs"])
    assert not list(tmp_path.rglob(".*.tmp-*"))
    # the same command again: every run is complete, nothing is run and no model is loaded
    assert main(["run", str(job_file), "--ray"]) == 0
    assert "cluster: 0 done, 6 skipped, 0 failed; 0 model loads" in capsys.readouterr().err


def test_a_bad_job_fails_alone_and_a_lost_worker_costs_one_retry(ray_cluster, job_file, reference, tmp_path, capsys):
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    data = yaml.safe_load(job_file.read_text())
    data["jobs"] = JOBS[:3] + [{"prompt": "a red circle", "seed": 9, "output": {"dir": "bad"},
                                "vqgan": {"checkpoint": str(bad)}}]
    marker = tmp_path / "killed"
    report, err = cluster_run(tmp_path, write_job(tmp_path, data), capsys, callbacks=[KillOnce(marker, 2)])
    assert report.code == 1 and marker.exists()
    assert [j.state for j in report.jobs] == ["done", "done", "done", "failed"]
    assert sum(j.attempts for j in report.jobs) == 1 and err.count("retrying: ") == 1
    failed = [l for l in err.splitlines() if l.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith("failed: bad: ") and "Traceback" not in err
    assert str(bad) in failed[0] or "broken.ckpt" in failed[0]
    for run in ("a", "b", "c"):  # the retried one and the others: as without Ray
        assert np.array_equal(pixels(tmp_path / run / "final.png"), pixels(reference / run / "final.png")), run
    assert not (tmp_path / "bad").exists()


def test_a_rerun_skips_finished_runs_and_resumes_a_stopped_one(ray_cluster, job_file, reference, tmp_path, capsys):
    from vqclip.runs.jobs import build_config
    from vqclip.runs.pipeline import run_job

    for run in ("a", "b", "c", "d", "sweep"):
        shutil.copytree(reference / run, tmp_path / run)
    shutil.rmtree(tmp_path / "c")
    data = yaml.safe_load(job_file.read_text())
    layer = {k: v for k, v in data.items() if k != "jobs"} | JOBS[2] | {"output": {"dir": str(tmp_path / "c"),
                                                                                  "video": False, "progress": False}}
    stopped = run_job(build_config(base=[("job", layer)]), extra_callbacks=[lambda e: e.step == 1])
    assert stopped.interrupted and (tmp_path / "c" / "state.pt").is_file()
    report, err = cluster_run(tmp_path, job_file, capsys, shared=True)
    assert report.code == 0 and report.loads == 1
    assert {j.key: j.state for j in report.jobs if j.state == "done"} == {"c": "done"}
    assert err.count("skipped: ") == 5
    meta = read_metadata(tmp_path / "c" / "final.png")
    assert not meta["stopped"] and meta["steps_done"] == 3
    assert np.array_equal(pixels(tmp_path / "c" / "final.png"), pixels(reference / "c" / "final.png"))


def test_a_normal_run_never_imports_ray(fresh_process):
    """Ray is an optional extra, imported by the cluster runner only (`vqclip run --ray`): not by the CLI, its parser
    or a run (one fresh process, shared with the other tests of lazy imports, checks all three)."""
    assert fresh_process["code"] == 0
    assert "ray" not in fresh_process["parser"] and "ray" not in fresh_process["run"]


def test_without_ray_the_flag_says_how_to_install_it(tmp_path, tiny_job, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as where Ray is not installed
    path = write_job(tmp_path, {**tiny_job, "prompt": "a red circle", "steps": 1})
    assert main(["run", str(path), "--ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --ray needs Ray: pip install 'vqclip[ray]'"]


def test_a_restyle_with_blend_0_spreads_its_frames_and_makes_the_video_of_vqclip_run(
        ray_cluster, tiny_job, tmp_path, capsys):
    from test_restyle import make_video

    from vqclip.files.video import count_frames

    video = make_video(tmp_path, n=5, audio=True)
    job = {**tiny_job, "prompt": "a red circle", "seed": 1, "threads": 1,
           "restyle": {"input": str(video), "blend": 0.0, "steps_per_frame": 2},
           "output": {"dir": "restyled", "progress": False}}
    path = write_job(tmp_path, job)
    for name in ("plain", "ray"):
        (tmp_path / name).mkdir()
    cwd = os.getcwd()
    os.chdir(tmp_path / "plain")
    try:
        assert main(["run", str(path)]) == 0
    finally:
        os.chdir(cwd)
    capsys.readouterr()
    report, err = cluster_run(tmp_path / "ray", path, capsys)
    assert report.code == 0 and err.count("done: ") == 1
    assert report.loads == 2 and len(report.jobs[0].chunks) == 2  # the frames in two shares, one per worker
    plain, ray = tmp_path / "plain" / "restyled", tmp_path / "ray" / "restyled"
    frames = sorted(p.name for p in (plain / "frames").iterdir())
    assert len(frames) == 5 and sorted(p.name for p in (ray / "frames").iterdir()) == frames
    for name in frames:  # the frames made on two workers are the frames made in order on one
        assert np.array_equal(pixels(plain / "frames" / name), pixels(ray / "frames" / name)), name
    assert np.array_equal(pixels(plain / "final.png"), pixels(ray / "final.png"))
    videos = [p.name for p in ray.iterdir() if p.suffix == ".mp4"]
    assert videos and count_frames(ray / videos[0]) == 5
    probe = subprocess.run([__import__("imageio_ffmpeg").get_ffmpeg_exe(), "-i", str(ray / videos[0])],
                           capture_output=True, text=True)
    assert "Audio:" in probe.stderr  # the input's audio, muxed in
