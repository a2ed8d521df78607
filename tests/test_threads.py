"""The job's `threads` on the one run path (issue 34, defect 4): the Python API, a run folder, the page's queue and a
cluster worker run on the job's CPU threads (0: torch's count as it is), and leave torch's count as it was, also when
runs overlap in several threads (the page's workers). `--devices` processes: tests/test_devices.py."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from vqclip.nets.device import threads, usable_threads

BASE = 3  # the process's count in these tests: neither the suite's 1 nor any job's


@pytest.fixture
def base_threads():
    """torch on BASE threads in this thread and in threads started later; the suite's count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(BASE)
    yield BASE
    torch.set_num_threads(before)


def in_new_thread(fn):
    """fn() in a new thread: what torch gives a thread started now (its count is seeded by the last one set)."""
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def left_as_it_was() -> bool:
    return torch.get_num_threads() == BASE and in_new_thread(torch.get_num_threads) == BASE


class Seen(list):
    """A step callback that records torch's thread count, in the thread running the step."""

    def __call__(self, event) -> None:
        self.append(torch.get_num_threads())


JOB = {"size": [32, 32], "cutouts": {"n": 2}, "steps": 2, "seed": 1}


@pytest.fixture(scope="module")
def pipe(tiny_vqgan, tiny_clip):
    from vqclip.api import Pipeline

    return Pipeline.from_files(*tiny_vqgan, clip={"model": str(tiny_clip[0]), "pretrained": str(tiny_clip[1])},
                               device="cpu")


def test_a_block_sets_the_count_and_restores_it_nested_or_not(base_threads):
    with threads(0):
        assert torch.get_num_threads() == BASE  # 0: torch's count, as it is
    with threads(1):
        assert torch.get_num_threads() == 1
        with threads(2):
            assert torch.get_num_threads() == usable_threads(2)
        assert torch.get_num_threads() == 1  # the enclosing run's count, not the process's
        with threads(0):
            assert torch.get_num_threads() == 1
    assert left_as_it_was()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with threads(100_000):  # more than the CPUs here only slows every step down
        assert torch.get_num_threads() == cpus
    with pytest.raises(KeyError), threads(1):  # a run that fails restores it too
        raise KeyError("x")
    assert left_as_it_was()


def test_overlapping_runs_in_two_threads_keep_their_own_counts_and_leave_none_behind(base_threads):
    """Run a (1 thread) starts, b (2 threads) starts in a fresh thread, a ends, then b: b's count holds to its end and
    afterwards the process is back at its own count, in this thread and in threads started later (saving and
    restoring each run's count would leave a's count behind: b's thread started while a ran)."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict = {}

    def a():
        with threads(1):
            a_in.set()
            assert b_in.wait(10)
            seen["a"] = torch.get_num_threads()
        a_out.set()

    def b():
        assert a_in.wait(10)
        with threads(2):
            b_in.set()
            assert a_out.wait(10)
            seen["b"] = torch.get_num_threads()

    workers = [threading.Thread(target=a), threading.Thread(target=b)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert seen == {"a": 1, "b": usable_threads(2)}
    assert left_as_it_was()


def test_a_pipeline_call_a_stream_and_a_run_folder_use_the_jobs_threads(pipe, base_threads, tmp_path, monkeypatch):
    from vqclip.runs import pipeline

    seen, finished, finish = Seen(), [], pipeline.finish
    monkeypatch.setattr(pipeline, "finish", lambda *a, **k: finished.append(torch.get_num_threads()) or finish(*a, **k))
    pipe("a red circle", callbacks=[seen], threads=1, **JOB)
    assert seen == [1, 1] and left_as_it_was()
    seen.clear()
    pipe("a red circle", callbacks=[seen], **{**JOB, "steps": 1})  # threads 0: torch's count, as it is
    assert seen == [BASE]
    seen.clear()
    stream = pipe.stream("a red circle", callbacks=[seen], threads=1, **JOB)
    assert len(list(stream)) == 2 and seen == [1, 1] and left_as_it_was()
    seen.clear()
    run = pipe.run({"prompt": "a red circle", "threads": 1, "output": {"video": False}, **JOB}, out=tmp_path / "r",
                   callbacks=[seen])
    assert seen == [1, 1] and run.config.threads == 1 and left_as_it_was()
    assert finished == [1]  # the video, final.png and an upscale too


def test_the_pages_queue_runs_a_job_on_its_threads(tiny_job, base_threads, tmp_path):
    from vqclip.runs.pipeline import run_job
    from vqclip.runs.queue import DONE, RunQueue
    from vqclip.ui.jobs import plan

    seen = Seen()

    def watched(cfg, **kwargs):
        return run_job(cfg, **{**kwargs, "extra_callbacks": [*kwargs["extra_callbacks"], seen]})

    queue = RunQueue(tmp_path / "outputs", run=watched)
    try:
        job = queue.submit(plan({**tiny_job, **JOB, "prompt": "a red circle", "threads": 1,
                                 "output": {"video": False}}, str, allow_paths=True, device="cpu"))
        assert queue.wait(job, 120) and job.state == DONE, job.error
    finally:
        queue.close()
    assert seen == [1, 1] and left_as_it_was()


def test_a_cluster_worker_runs_on_the_jobs_threads_else_on_its_cpus(pipe, tiny_job, base_threads, tmp_path):
    from vqclip.runs.clusterwork import Task, Worker
    from vqclip.runs.jobs import build_config

    worker = Worker(threads=1)  # as --ray-cpus-per-job 1 gives it
    worker.cache = pipe.cache  # the tiny models, loaded once for the module
    for n, want in ((0, 1), (2, usable_threads(2))):
        seen = Seen()
        cfg = build_config(base=[("job", {**tiny_job, **JOB, "prompt": "a red circle", "threads": n, "steps": 1,
                                          "output": {"video": False, "progress": False}})])
        out = worker.run(Task(f"t{n}", cfg, f"t{n}", str(tmp_path / f"t{n}"), callbacks=[seen]))
        assert out["steps"] == 1 and "final.png" in out["files"]
        assert seen == [want] and left_as_it_was()
