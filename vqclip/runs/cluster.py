"""`vqclip run JOBS.yaml --ray [ADDRESS]`: the jobs of `vqclip run` (a `jobs:` list, a sweep, `n:`) on a Ray cluster,
one actor per GPU (or per `cpus_per_job` CPUs) holding its models for every job it runs. Results land where `vqclip
run` would put them on the driver: each task sends back its run folder's files, written here atomically (or writes them
into a folder shared by every node). Jobs whose folder is complete are skipped, those with a job.yaml resumed; a job
lost with its node is retried once on another worker. Ray is imported only here, inside functions (`vqclip[ray]`)."""

from __future__ import annotations

import collections
import logging
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Optional

from ..config import GenerateConfig
from ..errors import VqclipError
from ..files.atomic import atomic_path
from ..files.runfolder import FINAL_FILE, FRAMES_DIR
from ..modes.registry import mode_name, rules_of
from .batch import Batch, write_grids
from .clusterwork import Progress, Task, Worker, folder_files
from .pipeline import resolve_seed
from .plan import DONE, NEW, RESUME, folder_state, place

log = logging.getLogger("vqclip")

@dataclass
class ClusterJob:
    """One run of the plan: its key on the display, config, the folder the CLI would give it, and how it went."""

    key: str
    cfg: GenerateConfig
    dest: Path
    state: str = "waiting"  # waiting, running, done, skipped, failed
    attempts: int = 0
    error: str = ""
    result: dict = field(default_factory=dict)
    frames: Optional[tuple[int, int]] = None  # a share of a restyle's frames [lo, hi), for `parent`
    parent: Optional["ClusterJob"] = None
    chunks: list["ClusterJob"] = field(default_factory=list)  # a restyle's shares of its frames


@dataclass
class ClusterReport:
    """What a cluster run did: every job, the VQGANs its workers loaded, and the exit code (0: all succeeded)."""

    jobs: list[ClusterJob]
    loads: int

    @property
    def code(self) -> int:
        return 0 if all(j.state in ("done", "skipped") for j in self.jobs) else 1


def import_ray():
    """Ray, or a one-line error saying how to get it."""
    try:
        import ray  # an optional extra, only for --ray
    except ImportError:
        raise VqclipError("--ray needs Ray: pip install 'vqclip[ray]'") from None
    return ray


def plan_jobs(plans: Iterable[GenerateConfig | Batch]) -> tuple[list[ClusterJob], list[tuple[Path, Batch, list]]]:
    """The runs of `vqclip run`'s plans, placed by the one planner (`plan.place`: the folders `vqclip run` gives them,
    a folder of another job's run refused), seeds drawn now; and the batches with their folders and jobs."""
    jobs, batches = [], []
    for item in place(plans):
        members = [ClusterJob(j.key, j.cfg if item.batch else replace(j.cfg, seed=resolve_seed(j.cfg.seed)), j.dest)
                   for j in item.members]
        jobs += members
        if item.batch is not None:
            batches.append((item.root, item.batch, members))
    for job in jobs:
        if mode_name(job.cfg) == "restyle" and job.cfg.restyle.blend > 0:
            log.info("%s: its frames run in order on one worker: blend %g starts each frame from the one before",
                     job.key, job.cfg.restyle.blend)
        elif mode_name(job.cfg) == "restyle" and job.cfg.restyle.flow != "none":
            log.info("%s: its frames run in order on one worker: restyle.flow %s carries each output into the next "
                     "frame", job.key, job.cfg.restyle.flow)
    return jobs, batches


def node_failure(exc: BaseException, ray) -> bool:
    """Was the failure the node's (the worker died, its node was lost, it ran out of memory), not the job's?"""
    ex = ray.exceptions
    lost = tuple(getattr(ex, n) for n in ("RayActorError", "WorkerCrashedError", "NodeDiedError", "OutOfMemoryError",
                                          "ObjectLostError") if hasattr(ex, n))
    if isinstance(exc, lost):
        return True
    cause = getattr(exc, "cause", None)
    return type(cause).__name__ == "OutOfMemoryError"  # torch.cuda.OutOfMemoryError on the worker


def one_line(exc: BaseException) -> str:
    """The job's error in one line: the worker's exception (not Ray's traceback around it)."""
    cause = getattr(exc, "cause", None) or exc
    lines = [l for l in str(cause).splitlines() if l.strip()] or [type(cause).__name__]
    text = lines[0] if isinstance(cause, VqclipError) else f"{type(cause).__name__}: {lines[-1]}"
    return text[:300]


def write_back(dest: Path, files: dict[str, bytes], keep_frames: bool = False) -> None:
    """A run's files into its folder here, each atomically, final.png last (a folder with it is a finished run);
    frames not among them (made again after a resumed state) removed, unless they are a share of a restyle's."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sorted(files, key=lambda r: r == FINAL_FILE):
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(files[rel])
    for path in [] if keep_frames else (dest / FRAMES_DIR).glob("*.png"):
        if f"{FRAMES_DIR}/{path.name}" not in files:
            path.unlink()


def run_cluster(plans: Iterable[GenerateConfig | Batch], *, address: Optional[str] = None, cpus_per_job: int = 1,
                shared: bool = False, callbacks: list = (), out=None) -> ClusterReport:
    """Run the plans of `vqclip run` on Ray: `address` None starts a local cluster ('auto' joins a running one; one
    already initialised in this process is used as it is); `callbacks` (picklable) run on the workers, at each step."""
    ray = import_ray()
    if cpus_per_job < 1:
        raise VqclipError(f"--ray-cpus-per-job: expected 1 or more, got {cpus_per_job}")
    jobs, batches = plan_jobs(plans)
    out = out or sys.stderr
    for job in jobs:
        if folder_state(job.dest) == DONE:
            job.state = "skipped"
            print(f"skipped: {job.dest} is complete", file=out)
    waiting = [j for j in jobs if j.state == "waiting"]
    started = bool(waiting) and not ray.is_initialized()  # all complete: no cluster needed
    if started:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    try:
        loads = _dispatch(ray, waiting, cpus_per_job, shared, list(callbacks), out)
    finally:
        if started:
            ray.shutdown()
    for root, batch, members in batches:
        if any(m.state in ("done", "skipped") for m in members):
            write_grids(root, batch, [_run_stub(m) for m in members])
    report = ClusterReport(jobs, loads)
    failed = [j for j in jobs if j.state == "failed"]
    print(f"cluster: {sum(j.state == 'done' for j in jobs)} done, {sum(j.state == 'skipped' for j in jobs)} skipped, "
          f"{len(failed)} failed; {loads} model loads", file=out)
    return report


def _run_stub(job: ClusterJob) -> Any:
    """What `write_grids` reads of a run, for a job run elsewhere."""
    seed = job.result.get("seed", job.cfg.seed)
    return SimpleNamespace(final=job.dest / FINAL_FILE, config=SimpleNamespace(seed=seed),
                           interrupted=job.state not in ("done", "skipped") or job.result.get("stopped", False))


def _dispatch(ray, jobs: list[ClusterJob], cpus_per_job: int, shared: bool, callbacks: list, out) -> int:
    """Give each idle worker the next job until all are done; a job lost with its worker goes once more to another
    worker (a fresh one takes the lost one's place). Returns the VQGANs loaded by the workers."""
    if not jobs:
        return 0
    from tqdm.auto import tqdm  # here, as Ray: only for a cluster run

    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    options = {"num_gpus": 1} if gpus else {"num_cpus": cpus_per_job}
    capacity = gpus or max(1, cpus // cpus_per_job)
    queue = collections.deque(_spread_frames(jobs, capacity))
    count = min(len(queue), capacity)
    remote_worker = ray.remote(**options)(Worker)
    board = ray.remote(num_cpus=0)(Progress).remote()
    idle = [remote_worker.remote(cpus_per_job) for _ in range(count)]
    workers = list(idle)
    pending, lost_loads = {}, 0
    bar = tqdm(total=len(queue), desc="jobs", unit="job", file=out, dynamic_ncols=True, mininterval=1)
    try:
        while queue or pending:
            while queue and idle:
                job, worker = queue.popleft(), idle.pop(0)
                pending[worker.run.remote(_task(job, shared, callbacks, board))] = (job, worker)
                job.state = "running"
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                job, worker = pending.pop(ref)
                try:
                    job.result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - every failure of a job is reported, the others go on
                    if node_failure(exc, ray):
                        workers.remove(worker)
                        ray.kill(worker, no_restart=True)
                        worker = remote_worker.remote(cpus_per_job)
                        workers.append(worker)
                        lost_loads += 1  # the lost worker's models were loaded too
                        if job.attempts == 0:
                            job.attempts, job.state = 1, "waiting"
                            queue.appendleft(job)
                            idle.append(worker)
                            bar.write(f"retrying: {job.key} ({one_line(exc)})", file=out)
                            continue
                    job.state, job.error = "failed", one_line(exc)
                    bar.write(f"failed: {job.key}: {job.error}", file=out)
                    if job.parent is not None and job.parent.state == "waiting":
                        job.parent.state, job.parent.error = "failed", f"{job.key}: {job.error}"
                else:
                    if job.result["files"] is not None:
                        write_back(job.dest, job.result["files"], keep_frames=job.frames is not None)
                    job.state = "done"
                    if job.parent is None:
                        bar.write(f"done: {job.dest / FINAL_FILE} (seed {job.result['seed']}, "
                                  f"{job.result['steps']} steps)", file=out)
                    elif job.parent.state == "waiting" and all(c.state == "done" for c in job.parent.chunks):
                        queue.append(job.parent)  # every frame is back: the video and final.png, on one worker
                        bar.total += 1
                idle.append(worker)
                bar.update(1)
            steps = ray.get(board.snapshot.remote())
            running = [j for j, _ in pending.values()]
            bar.set_postfix_str(f"running {len(running)}, failed {sum(j.state == 'failed' for j in jobs)} | " +
                                " ".join(f"{j.key} {steps.get(j.key, '0')}" for j in running), refresh=False)
        return lost_loads + sum(ray.get([w.loads.remote() for w in workers]))
    finally:
        bar.close()
        for worker in workers:
            ray.kill(worker, no_restart=True)
        ray.kill(board, no_restart=True)


def _spread_frames(jobs: list[ClusterJob], workers: int) -> list[ClusterJob]:
    """The queue: each new restyle with blend 0 and no flow (frames independent) as `workers` shares of its frames,
    then itself (once they are back: its video and final.png, made from the frames as a resume makes them); the
    others as they are."""
    out = []
    for job in jobs:
        if mode_name(job.cfg) != "restyle" or job.cfg.restyle.blend != 0 or job.cfg.restyle.flow != "none" or \
                workers < 2 or folder_state(job.dest) != NEW:
            out.append(job)
            continue
        n = rules_of(job.cfg).frame_count(job.cfg)
        cuts = [n * k // workers for k in range(workers + 1)]
        job.chunks = [ClusterJob(f"{job.key} frames {lo}-{hi - 1}", job.cfg, job.dest, frames=(lo, hi), parent=job)
                      for lo, hi in zip(cuts, cuts[1:]) if hi > lo]
        out += job.chunks
        log.info("%s: its %d frames are independent (blend 0): spread over %d workers", job.key, n, len(job.chunks))
    return out


def _task(job: ClusterJob, shared: bool, callbacks: list, board) -> Task:
    """The job as a worker's task, as its folder stands now: a run to resume sends its files along."""
    if job.frames is not None:
        return Task(job.key, job.cfg, str(job.dest), str(job.dest.resolve()), False, False, {}, job.frames,
                    callbacks, board)
    resume = folder_state(job.dest) == RESUME
    files = folder_files(job.dest) if resume and not shared else {}
    return Task(job.key, job.cfg, str(job.dest), str(job.dest.resolve()), resume, shared, files, None, callbacks,
                board)
