"""The one planner of job lists: `vqclip run`, `Pipeline.run`, the web page's queue and `--ray` expand the same job
list (`jobs:` with `n:`, `sweep:` and `candidates.keep`) into the same folder names and the same images; the queue's
`candidates.keep` images share one run of best-of-n's trials; a finished run is skipped and a stopped one resumed to
the uninterrupted run's image; a folder of another job's run is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.runs import pipeline

JOBS = [{"prompt": "a red circle", "n": 2},
        {"prompt": "a blue square", "sweep": {"cutouts.pow": [0.5, 2.0]}},
        {"prompt": "a green dot", "candidates": {"n": 3, "keep": 2, "steps": 1}}]
NAMES = {"job-1": ["seed=5", "seed=6"], "job-2": ["pow=0.5", "pow=2.0"], "job-3": ["best=1", "best=2"]}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def folders(root: Path) -> dict[str, list[str]]:
    """The run folders (those with a final.png) under each job's folder."""
    return {d.name: sorted(p.parent.name for p in d.glob("*/final.png")) for d in sorted(root.iterdir()) if d.is_dir()}


@pytest.fixture(scope="module")
def job_file(tmp_path_factory, tiny_job):
    path = tmp_path_factory.mktemp("jobs") / "jobs.yaml"
    files = {k: v for k, v in tiny_job.items() if k != "output"}
    path.write_text(yaml.safe_dump({**files, "size": [16, 16], "cutouts": {"n": 2}, "steps": 2, "seed": 5,
                                    "output": {"video": False, "save_every": 0}, "jobs": JOBS}))
    return path


@pytest.fixture(scope="module")
def pipe():
    from vqclip.api import Pipeline

    return Pipeline([], device="cpu")  # the job file names the models: one cache for the module's calls


@pytest.fixture(scope="module")
def cli(job_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "out"
    assert main(["run", str(job_file), "--quiet", "--out", str(out)]) == 0
    return out


def test_vqclip_run_expands_n_sweep_and_keep_into_one_folder_per_image(cli):
    assert folders(cli) == NAMES
    assert all((cli / job / "grid.png").is_file() and (cli / job / "batch.yaml").is_file() for job in NAMES)


def test_pipeline_run_makes_the_same_folders_and_images_as_vqclip_run(cli, job_file, pipe, tmp_path):
    runs = pipe.run(job_file, out=tmp_path / "api")
    assert folders(tmp_path / "api") == NAMES and len(runs) == 6
    for job, names in NAMES.items():
        for name in names:
            assert np.array_equal(pixels(tmp_path / "api" / job / name / "final.png"),
                                  pixels(cli / job / name / "final.png")), (job, name)


def test_the_queue_makes_the_same_images_and_runs_the_trials_of_keep_once(cli, job_file, tmp_path):
    from vqclip.runs.callbacks import with_trials
    from vqclip.runs.queue import DONE, RunQueue
    from vqclip.ui.jobs import plan

    trial_events = []

    def watched(cfg, **kwargs):
        seen = with_trials(lambda event: trial_events.append(event.step) if event.trial else None)
        return pipeline.run_job(cfg, **{**kwargs, "extra_callbacks": [*kwargs["extra_callbacks"], seen]})

    shared = {k: v for k, v in yaml.safe_load(job_file.read_text()).items() if k != "jobs"}
    queue = RunQueue(tmp_path / "outputs", run=watched)
    try:
        for i, job in enumerate(JOBS):
            queued = queue.submit(plan({**shared, **job}, str, allow_paths=True, device="cpu"))
            assert queue.wait(queued, 120) and queued.state == DONE, queued.error
            expected = NAMES[f"job-{i + 1}"]
            assert sorted(p.parent.name for p in queued.dir.glob("*/final.png")) == expected
            for name in expected:
                assert np.array_equal(pixels(queued.dir / name / "final.png"),
                                      pixels(cli / f"job-{i + 1}" / name / "final.png")), name
    finally:
        queue.close()
    assert trial_events == [0]  # keep 2: one trial step (candidates.steps 1), run once for both images


def test_the_cluster_places_the_runs_in_the_folders_of_vqclip_run(job_file, tmp_path):
    from vqclip.runs import cluster
    from vqclip.runs.jobs import jobs_from_file
    from vqclip.runs.plan import plan

    plans = plan([(f"j{i}", job) for i, job in enumerate(jobs_from_file(job_file))], out=tmp_path / "ray")
    jobs, batches = cluster.plan_jobs(plans)
    assert [j.dest.relative_to(tmp_path / "ray").as_posix() for j in jobs] == [
        f"{job}/{name}" for job, names in NAMES.items() for name in names]
    assert [root.name for root, _, _ in batches] == list(NAMES)


def test_a_rerun_skips_finished_runs_resumes_a_stopped_one_and_refuses_another_jobs_folder(
        cli, job_file, pipe, tmp_path, monkeypatch):
    import shutil

    from vqclip import api

    out = tmp_path / "again"
    shutil.copytree(cli, out)
    made = []
    real = pipeline.run_job
    for module in (pipeline, api):
        monkeypatch.setattr(module, "run_job", lambda cfg, **kw: made.append(cfg.output.dir) or real(cfg, **kw))
    before = {p: p.read_bytes() for p in out.rglob("final.png")}
    assert main(["run", str(job_file), "--quiet", "--out", str(out)]) == 0
    assert made == [] and {p: p.read_bytes() for p in out.rglob("final.png")} == before  # all six skipped
    runs = pipe.run(job_file, out=out)
    assert made == [] and {p: p.read_bytes() for p in out.rglob("final.png")} == before
    assert [r.final for r in runs] == [out / j / n / "final.png" for j, ns in NAMES.items() for n in ns]
    monkeypatch.undo()

    single = {k: v for k, v in yaml.safe_load(job_file.read_text()).items() if k != "jobs"} | {"prompt": "a cat"}
    whole = pipe.run(single, out=tmp_path / "whole")
    stopped = pipe.run(single, out=tmp_path / "stopped", callbacks=[lambda event: event.step == 0])
    assert stopped.interrupted and (tmp_path / "stopped" / "state.pt").is_file()
    resumed = pipe.run(single, out=tmp_path / "stopped")
    assert not resumed.interrupted and resumed.result.steps == 2
    assert np.array_equal(pixels(resumed.final), pixels(whole.final))
    with pytest.raises(VqclipError, match="already holds a run; choose another --out .*job differs in prompt"):
        pipe.run({**single, "prompt": "a dog"}, out=tmp_path / "whole")


def test_a_job_that_draws_its_seed_goes_on_with_its_run_and_a_seeded_one_only_with_its_own(job_file, tmp_path):
    """A folder's job.yaml records the drawn seed: a rerun of the seedless job goes on with it; a job that names
    another seed is another job."""
    from vqclip.config import to_yaml
    from vqclip.runs.batch import plan_job
    from vqclip.runs.plan import RESUME, place

    shared = {k: v for k, v in yaml.safe_load(job_file.read_text()).items() if k not in ("jobs", "seed")}
    layer = {**shared, "prompt": "a cat", "output": {**shared["output"], "dir": str(tmp_path / "r")}}
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "job.yaml").write_text(to_yaml(plan_job({**layer, "seed": 42}, "job")))
    [item] = place([plan_job(layer, "job")])
    assert item.members[0].state == RESUME
    place([plan_job({**layer, "seed": 42}, "job")])
    with pytest.raises(VqclipError, match="already holds a run; .*job differs in seed"):
        place([plan_job({**layer, "seed": 7}, "job")])


def test_a_stopped_run_ends_the_job_list(job_file, pipe, tmp_path):
    runs = pipe.run(job_file, out=tmp_path / "out", callbacks=[lambda event: event.step == 0])
    assert len(runs) == 1 and runs[0].interrupted and not (tmp_path / "out" / "job-1" / "seed=6").exists()
