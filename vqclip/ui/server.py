"""The web page's server (FastAPI): a JSON API over the run queue, live progress as server-sent events, the gallery
of the outputs folder, and the files under it; nothing else of the machine is served (see docs/ui.md, Safety)."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import io
import json
import secrets
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..errors import VqclipError
from ..runs.queue import ENDED, Job, RunQueue
from .a1111 import a1111_router
from .bodies import capped_body, content_length, fail, read_json
from .bounded import Busy, Checker
from .gallery import UPLOADS, edit_job_json, list_runs, run_files, safe_file
from .jobs import Uploads, check_job, field_of, page_text
from .options import form_options, presets
from .steering import steering_router

if TYPE_CHECKING:
    from ..nets.load import ModelCache

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD = 20 << 20  # bytes of an uploaded image
MAX_BODY = 256 << 10  # bytes of a job request
MAX_PIXELS = 4096 * 4096
FORM_SLACK = 64 << 10  # bytes of a multipart form around its file
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")  # what Pillow may parse of an upload (not EPS: Ghostscript)
# what a served file may load or run, should it be a page (a run's report.html): its inlined images and style, no script
FILES_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"


def file_name(name: Optional[str]) -> str:
    """An uploaded file's name as a message shows it: one line, at most 60 characters."""
    return " ".join((name or "the file").split())[:60] or "the file"


def store_image(data: bytes, name: str, uploads: Path) -> tuple[str, Image.Image]:
    """(upload id, RGB image) of an uploaded image's bytes, re-encoded into the uploads folder (nothing of the bytes but
    the pixels is kept); a one-line error for what is not an image or is over MAX_PIXELS."""
    too_large = f"upload: {name} is too large an image (at most {MAX_PIXELS:,} pixels, e.g. 4096x4096)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
                im.verify()
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
                if im.width * im.height > MAX_PIXELS:  # before a pixel of it is decoded
                    raise VqclipError(f"{too_large}: it is {im.width}x{im.height}")
                rgb = im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own, far larger limit
        raise VqclipError(too_large) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise VqclipError(f"upload: {name} is not an image (PNG, JPEG, WebP, GIF or BMP)") from None
    upload_id = secrets.token_hex(16)
    uploads.mkdir(exist_ok=True)
    rgb.save(uploads / f"{upload_id}.png")
    return upload_id, rgb


def create_app(outputs: Path, *, device: Optional[str] = None, cache: Optional["ModelCache"] = None,
               allow_paths: bool = False, max_upload: int = MAX_UPLOAD, checker: Optional[Checker] = None) -> FastAPI:
    """The app serving the page for runs under `outputs`, on `device` (default: each job's, auto).

    Args:
        allow_paths: let jobs name files of the server (tests with tiny model files; never for a served page).
        max_upload: the largest accepted upload, in bytes.
        checker: the checking processes of submitted jobs, with their time limit (default: a new `Checker()`, closed
            with the app; one given is shared and left open).

    `app.state.stop()` begins stopping (it only sets a flag: safe in a signal handler): the event streams end, checks
    are killed and the queue stops its runs at the end of their step, so a server's shutdown waits for nothing else.
    """
    outputs = Path(outputs).resolve()
    outputs.mkdir(parents=True, exist_ok=True)
    uploads = outputs / UPLOADS
    limit = f"{max_upload / 2**20:g} MB" if max_upload >= 2**20 else f"{max_upload / 2**10:g} KB"
    queue = RunQueue(outputs, cache)
    own_checker, checker = checker is None, checker or Checker()
    stopping = threading.Event()

    async def stop_when_asked():
        while not stopping.is_set():
            await asyncio.sleep(0.1)
        if own_checker:
            checker.close()  # a check waiting on its process is answered now
        queue.close(timeout=0)  # runs stop at the end of their step; the lifespan's end waits for them

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=queue.warm_up, daemon=True, name="vqclip-warm-up").start()  # torch, while the page loads
        watcher = asyncio.create_task(stop_when_asked())
        yield
        stopping.set()
        await watcher
        await asyncio.to_thread(queue.close)

    app = FastAPI(title="vqclip", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.queue, app.state.outputs, app.state.stop = queue, outputs, stopping.set

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return fail(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        return fail(400, "malformed request: " + "; ".join(str(e.get("msg")) for e in exc.errors())[:300])

    @app.get("/")
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/presets")
    async def get_presets():
        return presets()

    @app.get("/api/options")
    async def get_options():
        return form_options()

    @app.post("/api/uploads")
    async def upload(request: Request):
        too_big = f"is over the {limit} limit; upload a smaller image"
        length = content_length(request)
        if length is None:
            return fail(411, "upload: send the image with its length (a form, as a browser sends it)")
        if length > max_upload + FORM_SLACK:  # refused before a byte of it is read
            return fail(413, f"upload: the request {too_big}")
        form = await request.form(max_files=1, max_fields=1)
        file = form.get("file")
        if not isinstance(file, UploadFile):
            return fail(400, "upload: send the image as the form's `file` field")
        name = file_name(file.filename)
        data = await file.read(max_upload + 1)
        if len(data) > max_upload:
            return fail(413, f"upload: {name} {too_big}")
        try:
            upload_id, rgb = store_image(data, name, uploads)
        except VqclipError as exc:
            return fail(400, str(exc))
        return {"id": f"upload:{upload_id}", "width": rgb.width, "height": rgb.height,
                "url": f"/files/{UPLOADS}/{upload_id}.png"}

    @app.post("/api/jobs")
    async def submit(request: Request):
        data = await read_json(request, MAX_BODY, "job")
        if isinstance(data, JSONResponse):
            return data
        if not isinstance(data, dict) or not (isinstance(data.get("job"), dict) or isinstance(data.get("yaml"), str)):
            return fail(400, 'job: send {"job": {...keys...}} or {"yaml": "...text..."}')
        try:  # in a checking process: a job whose check runs away is stopped at the bound, not a server thread
            request = {k: data[k] for k in ("job", "yaml") if k in data}
            planned, notes = await asyncio.to_thread(checker.run, "job", check_job, request, Uploads(uploads),
                                                     allow_paths, device)
            if data.get("check"):  # validate only (the YAML box's check button)
                return {"ok": True, **({"notes": notes} if notes else {})}
            queued = await asyncio.to_thread(queue.submit, planned, notes)  # the first may import torch
        except Busy as exc:
            return fail(503, str(exc))
        except VqclipError as exc:  # named as the page names it (a form's field, not a CLI flag)
            field = field_of(str(exc))
            return fail(400, page_text(str(exc), field, labels="yaml" not in request), field)
        return describe(queued)

    def describe(job: Job) -> dict:
        out = {**job.summary(), "position": queue.position(job)}
        if job.dir is not None:
            out["files"] = run_files(outputs, job.dir)
        return out

    @app.get("/api/jobs")
    async def list_jobs():
        return [describe(j) for j in queue.jobs()]

    @app.delete("/api/jobs/{job_id}")
    async def cancel(job_id: str):
        job = queue.cancel(job_id)
        if job is None:
            return fail(404, f"no job {job_id[:40]!r}")
        return describe(job)

    @app.get("/api/jobs/{job_id}/events")
    async def events(job_id: str, request: Request):
        job = queue.get(job_id)
        if job is None:
            return fail(404, f"no job {job_id[:40]!r}")

        async def stream():
            seen, sent_curve, sent_preview, sent_steers = None, 0, -2, collections.Counter()
            while not stopping.is_set():  # the server is stopping: end the stream now, not at its grace timeout
                steering = job.steering
                now = (job.version, len(steering.entries), steering.paused) if steering else job.version
                if now != seen:  # a step, a steer taken or a pause
                    seen = now
                    event = describe(job)
                    counted: collections.Counter = collections.Counter()
                    for steer in event.pop("steers"):  # each steer once, as it is taken; a later tab gets all
                        key = json.dumps(steer, sort_keys=True)
                        counted[key] += 1
                        if counted[key] > sent_steers[key]:
                            sent_steers[key] += 1
                            yield f"data: {json.dumps({'steer': steer})}\n\n"
                    event["curve_from"], event["curve"] = sent_curve, job.curve[sent_curve:]
                    sent_curve = len(event["curve"]) + sent_curve
                    if job.preview is not None and job.preview_step != sent_preview:
                        sent_preview = job.preview_step
                        event["preview"] = "data:image/png;base64," + base64.b64encode(job.preview).decode()
                        event["preview_step"] = job.preview_step
                    yield f"data: {json.dumps(event)}\n\n"
                    if job.state in ENDED:
                        return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def check(job: dict) -> tuple:
        """(plan, notes) of a page job, checked in a checking process as the page's are (`Busy` when all are)."""
        return await asyncio.to_thread(checker.run, "job", check_job, {"job": job}, Uploads(uploads), allow_paths,
                                       device)

    app.include_router(a1111_router(queue, check, capped_body, lambda data, name: store_image(data, name, uploads),
                                    uploads, max_upload, 3 * max_upload + FORM_SLACK))  # two images in base64

    app.include_router(steering_router(queue, describe, Uploads(uploads)))

    @app.get("/api/runs")
    async def runs():
        return await asyncio.to_thread(list_runs, outputs)

    @app.get("/api/runs/{name:path}")
    async def run(name: str):
        folder = safe_file(outputs, name, folder=True)
        try:  # read (and made JSON) in a checking process too: bounded, whatever its job.yaml holds
            text, _ = await asyncio.to_thread(checker.run, "run", edit_job_json, outputs, folder)
            return Response(text, media_type="application/json")
        except Busy as exc:
            return fail(503, str(exc))
        except VqclipError as exc:
            return fail(400, str(exc))

    @app.get("/files/{name:path}")
    async def files(name: str):
        return FileResponse(safe_file(outputs, name), headers={"Cache-Control": "no-cache",
                                                               "Content-Security-Policy": FILES_POLICY})

    return app
