"""The cluster runner's plan and dispatch without Ray (fast; tests/test_cluster.py runs the real thing): which folders
are complete, resumed or new; folders apart from each other; files written back final.png last; a restyle's frames
cut into shares that cover them exactly once; and the dispatcher, on a stand-in for Ray's API: a job lost with its
worker is retried once on a fresh worker and then fails, a job's own error is not retried, the others go on."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from vqclip.config import to_yaml
from vqclip.errors import VqclipError
from vqclip.runs import cluster as c
from vqclip.runs.batch import plan_job
from vqclip.runs.clusterwork import Worker
from vqclip.runs.jobs import build_config

from test_ui_gallery import png


@pytest.fixture
def cfg(tiny_job):
    return build_config(base=[("job", {**tiny_job, "prompt": "a red circle", "steps": 3})])


def test_a_folder_is_complete_only_with_a_final_image_not_stopped(tmp_path):
    def folder(name, final=None, job=False):
        path = tmp_path / name
        path.mkdir()
        if final == "damaged":
            (path / "final.png").write_bytes(b"not a png")
        elif final is not None:
            png(path / "final.png", {"prompt": "x", "seed": 1, "stopped": final})
        if job:
            (path / "job.yaml").write_text("prompt: x\n")
        return path

    assert c.folder_state(tmp_path / "absent") == c.NEW
    assert c.folder_state(folder("empty")) == c.NEW
    assert c.folder_state(folder("done", final=False)) == c.DONE
    assert c.folder_state(folder("done-with-job", final=False, job=True)) == c.DONE
    assert c.folder_state(folder("stopped", final=True, job=True)) == c.RESUME
    assert c.folder_state(folder("killed", job=True)) == c.RESUME
    assert c.folder_state(folder("damaged", final="damaged", job=True)) == c.RESUME
    assert c.folder_state(folder("damaged-alone", final="damaged")) == c.NEW


def test_planned_folders_are_apart_from_each_other_and_from_what_exists(tmp_path, monkeypatch, tiny_job):
    from vqclip.files import runfolder

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runfolder.time, "strftime", lambda fmt: "20250101-000000")
    (tmp_path / "outputs" / "20250101-000000-a-red-circle").mkdir(parents=True)  # a run of a second ago
    job = {**tiny_job, "prompt": "a red circle"}
    plans = [plan_job(job, "j1"), plan_job(job, "j2"), plan_job({**job, "seed": 7, "output": {"dir": "mine"}}, "j3"),
             plan_job({**job, "sweep": {"seed": [1, 2]}}, "j4")]
    jobs, batches = c.plan_jobs(plans)
    names = [j.dest.as_posix() for j in jobs]
    root = jobs[3].dest.parent
    assert names[0] == "outputs/20250101-000000-a-red-circle-2" and names[2] == "mine"
    assert len({names[0], names[1], root.as_posix(), "outputs/20250101-000000-a-red-circle"}) == 4
    assert all(n.startswith("outputs/20250101-000000-a-red-circle-") for n in (names[1], root.as_posix()))
    assert [j.key for j in jobs[3:]] == [f"{root.name}/seed=1", f"{root.name}/seed=2"]
    assert [b[0] for b in batches] == [root] and batches[0][2] == jobs[3:]
    assert all(isinstance(j.cfg.seed, int) for j in jobs[:2]) and jobs[2].cfg.seed == 7  # drawn now, recorded
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "final.png").write_bytes(b"x")  # damaged: not complete, no job.yaml: a new run, refused
    with pytest.raises(VqclipError, match="already holds a run"):
        c.plan_jobs([plan_job({**job, "output": {"dir": "taken"}}, "j5")])


def test_files_come_back_final_image_last_and_stale_frames_go(tmp_path, monkeypatch):
    written = []
    real = c.atomic_path
    monkeypatch.setattr(c, "atomic_path", lambda path: written.append(path.name) or real(path))
    dest = tmp_path / "run"
    (dest / "frames").mkdir(parents=True)
    for i in range(4):
        (dest / "frames" / f"{i:06d}.png").write_bytes(b"old")
    files = {"final.png": b"F", "frames/000000.png": b"0", "frames/000001.png": b"1", "job.yaml": b"J", "z.mp4": b"V"}
    c.write_back(dest, files, keep_frames=True)
    assert written[-1] == "final.png" and len(written) == 5
    assert sorted(p.name for p in (dest / "frames").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    c.write_back(dest, files)
    assert sorted(p.name for p in (dest / "frames").iterdir()) == ["000000.png", "000001.png"]
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == files


@pytest.mark.parametrize("frames, max_frames, workers, cuts", [
    (10, 0, 3, [(0, 3), (3, 6), (6, 10)]), (10, 4, 2, [(0, 2), (2, 4)]), (2, 0, 3, [(0, 1), (1, 2)]),
    (7, 0, 7, [(i, i + 1) for i in range(7)]), (5, 0, 1, None),
])
def test_a_restyles_frames_are_cut_into_shares_that_cover_each_once(cfg, tmp_path, monkeypatch, frames,
                                                                     max_frames, workers, cuts):
    monkeypatch.setattr("vqclip.modes.rules.count_frames", lambda path: frames)  # the restyle's one frame count
    styled = replace(cfg, restyle=replace(cfg.restyle, input="in.mp4", blend=0.0, max_frames=max_frames))
    job = c.ClusterJob("r", styled, tmp_path / "r")
    out = c._spread_frames([job, c.ClusterJob("still", cfg, tmp_path / "s")], workers)
    if cuts is None:
        assert out == [job, out[1]] and not job.chunks
        return
    assert [j.frames for j in out[:-1]] == cuts and out[-1].key == "still" and job.chunks == out[:-1]
    assert all(j.parent is job and j.dest == job.dest for j in job.chunks)
    blended = c.ClusterJob("b", replace(styled, restyle=replace(styled.restyle, blend=0.5)), tmp_path / "b")
    assert c._spread_frames([blended], workers) == [blended]  # each frame starts from the one before: in order


class FakeRay:
    """Ray's API as `_dispatch` uses it, run in this process: a task runs when its result is asked for."""

    class exceptions:
        class RayActorError(Exception):
            pass

        class RayTaskError(Exception):
            def __init__(self, cause):
                super().__init__(str(cause))
                self.cause = cause

    def __init__(self, script: dict[str, list[str]], cpus: int = 2):
        self.script, self.cpus, self.ran, self.actors = script, cpus, [], []

    def cluster_resources(self):
        return {"CPU": self.cpus}

    def remote(self, **options):
        def wrap(cls):
            def make(*args):
                obj = Scripted(self) if cls is Worker else cls(*args)
                handle = SimpleNamespace(obj=obj, killed=False)
                for name in ("run", "loads", "report", "snapshot"):
                    if hasattr(obj, name):
                        setattr(handle, name, SimpleNamespace(remote=lambda *a, _m=getattr(obj, name): Ref(_m, a)))
                self.actors.append(handle)
                return handle
            return SimpleNamespace(remote=make)
        return wrap

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[:1], refs[1:]

    def get(self, ref):
        return [self.get(r) for r in ref] if isinstance(ref, list) else ref.method(*ref.args)

    def kill(self, actor, no_restart=True):
        actor.killed = True


class Ref:
    """A task's result to come: the call, made when it is asked for."""

    def __init__(self, method, args):
        self.method, self.args = method, args


class Scripted:
    """A worker whose jobs end as the script says: ok, lost (its node died) or error (the job's own)."""

    def __init__(self, ray: FakeRay):
        self.ray, self.jobs = ray, 0

    def run(self, task):
        outcome = self.ray.script[task.key].pop(0)
        self.ray.ran.append(task.key)
        if outcome == "lost":
            raise FakeRay.exceptions.RayActorError("The actor died unexpectedly")
        if outcome == "error":
            raise FakeRay.exceptions.RayTaskError(VqclipError("vqgan.checkpoint: not a checkpoint"))
        self.jobs += 1
        return {"files": None, "seed": 1, "steps": 3, "stopped": False}

    def loads(self):
        return 1 if self.jobs else 0


def test_a_lost_job_is_retried_once_on_a_fresh_worker_and_a_jobs_own_error_not_at_all(cfg, tmp_path):
    ray = FakeRay({"a": ["lost", "ok"], "b": ["lost", "lost", "ok"], "c": ["error", "ok"], "d": ["ok"]})
    jobs = [c.ClusterJob(k, cfg, tmp_path / k) for k in "abcd"]
    out = io.StringIO()
    loads = c._dispatch(ray, jobs, 1, True, [], out)
    assert [(j.state, j.attempts) for j in jobs] == [("done", 1), ("failed", 1), ("failed", 0), ("done", 0)]
    assert sorted(ray.ran) == ["a", "a", "b", "b", "c", "d"]
    assert jobs[1].error == "RayActorError: The actor died unexpectedly"
    assert jobs[2].error == "vqgan.checkpoint: not a checkpoint"
    workers = [h for h in ray.actors if isinstance(h.obj, Scripted)]
    assert len(workers) == 2 + 3 and all(h.killed for h in ray.actors)  # a fresh worker for each lost one
    assert loads == 3 + sum(h.obj.loads() for h in workers)  # the lost workers' models were loaded too
    text = out.getvalue()
    assert text.count("retrying: ") == 2 and "failed: b: RayActorError" in text and "failed: c: vqgan" in text


def test_a_restyle_is_finished_once_all_its_shares_are_back_and_fails_with_one(cfg, tmp_path):
    for outcome, state in (("ok", "done"), ("error", "failed")):
        parent = c.ClusterJob("r", cfg, tmp_path / outcome)
        parent.chunks = [c.ClusterJob(f"r frames {lo}", cfg, parent.dest, frames=(lo, lo + 2), parent=parent)
                         for lo in (0, 2)]
        ray = FakeRay({"r frames 0": ["ok"], "r frames 2": [outcome], "r": ["ok"]})
        c._dispatch(ray, list(parent.chunks), 1, True, [], io.StringIO())
        assert parent.state == state and ray.ran[-1] == ("r" if outcome == "ok" else "r frames 2")
        if outcome == "error":
            assert parent.error == "r frames 2: vqgan.checkpoint: not a checkpoint"


def test_an_error_is_one_line_the_workers_own_and_a_lost_node_is_told_apart():
    ray = SimpleNamespace(exceptions=FakeRay.exceptions)
    assert c.node_failure(FakeRay.exceptions.RayActorError("x"), ray)
    assert not c.node_failure(FakeRay.exceptions.RayTaskError(VqclipError("bad")), ray)
    oom = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory")
    assert c.node_failure(FakeRay.exceptions.RayTaskError(oom), ray)
    boom = FakeRay.exceptions.RayTaskError(ValueError("Traceback ...\n  File x\nValueError: bad value"))
    assert c.one_line(boom) == "ValueError: ValueError: bad value"
    assert c.one_line(FakeRay.exceptions.RayTaskError(VqclipError("first line\nsecond"))) == "first line"
    assert len(c.one_line(FakeRay.exceptions.RayTaskError(VqclipError("x" * 1000)))) == 300


def test_a_rerun_skips_complete_runs_resumes_stopped_ones_and_starts_the_rest(cfg, tmp_path, monkeypatch):
    ray = FakeRay({"b": ["ok"], "c": ["ok"]})
    tasks = []
    run = Scripted.run
    monkeypatch.setattr(Scripted, "run", lambda self, task: tasks.append(task) or run(self, task))
    ray.is_initialized = lambda: True  # a cluster already joined: used as it is
    monkeypatch.setattr(c, "import_ray", lambda: ray)
    png(tmp_path / "a" / "final.png", {"prompt": "x", "seed": 1, "stopped": False})
    png(tmp_path / "b" / "final.png", {"prompt": "x", "seed": 1, "stopped": True})
    plans = [replace(cfg, seed=1, output=replace(cfg.output, dir=str(tmp_path / k))) for k in "abc"]
    (tmp_path / "b" / "job.yaml").write_text(to_yaml(plans[1]))  # the job's own run (another job's is refused)
    out = io.StringIO()
    report = c.run_cluster(plans, out=out)
    assert [j.state for j in report.jobs] == ["skipped", "done", "done"] and report.code == 0
    assert [(t.key, t.resume, sorted(t.files)) for t in tasks] == [("b", True, ["final.png", "job.yaml"]),
                                                                  ("c", False, [])]
    assert f"skipped: {tmp_path / 'a'} is complete" in out.getvalue()
    assert "cluster: 2 done, 1 skipped, 0 failed" in out.getvalue()
    with pytest.raises(VqclipError, match="--ray-cpus-per-job: expected 1 or more, got 0"):
        c.run_cluster(plans, cpus_per_job=0)
