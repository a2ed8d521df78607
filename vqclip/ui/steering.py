"""The page's steering of a queued run: a steer (the keys `vqclip.optim.steer.STEER_KEYS` names), pause and continue,
and a branch from the run's next step, each a JSON request answered with the job as the queue lists it, or a one-line
error (4xx) that leaves the run as it was."""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..errors import VqclipError, shown
from ..optim.steer import STEER_KEYS
from ..runs.queue import ENDED, Job, RunQueue
from .bodies import fail, read_json
from .jobs import Uploads, check_safe

MAX_STEER = 64 << 10  # bytes of a steer or branch request; a prompt is far shorter


def check_keys(change: dict, what: str) -> None:
    """A one-line error for a key a steer does not take (before any is passed on as a keyword)."""
    for key in change:
        if key not in STEER_KEYS:
            raise VqclipError(f"{what}: unknown key {shown(key)}; a {what} changes {', '.join(STEER_KEYS)}")


def page_change(change: dict, uploads: Uploads) -> dict:
    """A change as the page may send it: what names an image (a prompt's region mask, a steer's image prompts or
    mask) must be one of its uploads, as in a job of the page (`check_safe`), never a file of the server."""
    safe = check_safe({"steer": [change]}, uploads)["steer"][0]
    if isinstance(safe.get("prompt"), str):
        check_safe({"prompt": safe["prompt"]}, uploads)  # a region after '@': a named one or an upload
    return safe


def steering_router(queue: RunQueue, describe: Callable[[Job], dict], uploads: Uploads) -> APIRouter:
    """POST /api/jobs/{id}/steer, /pause, /resume and /branch over `queue`; `describe` makes a job's answer; what a
    change names as an image must be one of the page's `uploads`."""
    router = APIRouter()

    def steered(job_id: str, what: str) -> Job | JSONResponse:
        """The job to steer, or the answer that it cannot be: unknown (404), a batch or restyle, ended (409)."""
        job = queue.get(job_id)
        if job is None:
            return fail(404, f"{what}: no job {job_id[:40]!r}")
        if job.steering is None:
            return fail(409, f"{what}: job {job.id} cannot be steered: it makes several images (a sweep, n: or "
                             "candidates.keep) or restyles a video; steer a run of one image")
        if job.state in ENDED:
            return fail(409, f"{what}: job {job.id} has {'been ' * (job.state == 'cancelled')}{job.state}; start a "
                             "new run (or branch from a running one)")
        return job

    async def body(request: Request, what: str) -> dict | JSONResponse:
        """The request's JSON object (at most MAX_STEER bytes), or the one-line answer why not."""
        data = await read_json(request, MAX_STEER, what, f"; a {what} is a few words", empty=b"{}")
        if isinstance(data, JSONResponse):
            return data
        if not isinstance(data, dict):
            keys = " or ".join(f'"{k}"' for k in STEER_KEYS)
            return fail(400, f"{what}: send a JSON object of the changes, e.g. {{{keys}: ...}}")
        return data

    @router.post("/api/jobs/{job_id}/steer")
    async def steer(job_id: str, request: Request):
        job = steered(job_id, "steer")
        data = await body(request, "steer") if isinstance(job, Job) else job
        if isinstance(data, JSONResponse):
            return data
        try:
            check_keys(data, "steer")
            job.steering.steer(**page_change(data, uploads))  # checked now: a bad one leaves the run as it was
        except VqclipError as exc:
            return fail(400, str(exc))
        queue.changed(job)
        return describe(job)

    @router.post("/api/jobs/{job_id}/pause")
    async def pause(job_id: str):
        job = steered(job_id, "pause")
        if isinstance(job, JSONResponse):
            return job
        try:
            job.steering.pause()
        except VqclipError as exc:
            return fail(409, str(exc))
        queue.changed(job)
        return describe(job)

    @router.post("/api/jobs/{job_id}/resume")
    async def resume(job_id: str):
        job = steered(job_id, "resume")
        if isinstance(job, JSONResponse):
            return job
        job.steering.resume()
        queue.changed(job)
        return describe(job)

    @router.post("/api/jobs/{job_id}/branch")
    async def branch(job_id: str, request: Request):
        job = steered(job_id, "branch")
        data = await body(request, "branch") if isinstance(job, Job) else job
        if isinstance(data, JSONResponse):
            return data
        stop: Any = data.pop("stop", False)
        if not isinstance(stop, bool):
            return fail(400, f"branch.stop: expected true or false, got {shown(stop)}")
        try:
            check_keys(data, "branch")
            child = queue.branch(job, stop, **page_change(data, uploads))
        except VqclipError as exc:
            return fail(400, str(exc))
        queue.changed(job)
        return describe(child)

    return router
