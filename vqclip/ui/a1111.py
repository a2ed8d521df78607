"""AUTOMATIC1111's HTTP API (`/sdapi/v1/...`) over the page's run queue, so that clients written for that web UI drive
vqclip unchanged: a request becomes a page job (checked as the page's are, run one at a time), the answer carries
final.png as base64 with its `parameters` chunk; what has no meaning for VQGAN+CLIP is accepted and listed in `info`.
A sampler is vqclip's optimiser (`/samplers` lists them; `sampler_name` naming one picks it), `/upscalers` lists the
upscaler presets, and `/png-info` reads a PNG's `parameters` back."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import VqclipError, reason
from ..files.images import read_metadata
from ..files.infotext import parse_parameters
from ..models.presets import list_presets
from ..models.upscalers import load_upscalers_file
from ..optim.optimizers import OPTIMIZERS
from ..runs.batch import Batch
from ..runs.queue import ENDED, RUNNING, Job, RunQueue
from .bounded import Busy
from .options import presets

MAX_IMAGES = 16  # batch_size x n_iter of one request
DENOISE = 0.75  # A1111's default denoising_strength
USED = {"prompt", "negative_prompt", "steps", "seed", "width", "height", "batch_size", "n_iter", "tiling",
        "override_settings"}  # txt2img's fields that map onto the job
USED_IMG = USED | {"init_images", "mask", "denoising_strength", "mask_blur", "inpainting_mask_invert"}
DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,")


class Refused(Exception):
    """A request refused with a one-line message and its HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def integer(body: dict, key: str, default: int, low: int, high: Optional[int] = None) -> int:
    """body[key] as an int in [low, high], or a one-line error naming the field and the range."""
    value = body.get(key, default)
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
        raise Refused(f"{key}: expected {bound}, got {str(value)[:40]!r}")
    return value


def text(body: dict, key: str) -> str:
    value = body.get(key) or ""
    if not isinstance(value, str):
        raise Refused(f"{key}: expected a string, got {type(value).__name__}")
    return value


def to_job(body: dict, model: str) -> tuple[dict, list[str]]:
    """(page job, ignored fields) of a txt2img request: prompt, negative, steps, seed (-1: drawn), size (rounded by
    the job's check to the image model's factor), n = batch_size x n_iter; `model` unless override_settings names
    another preset."""
    prompt = text(body, "prompt").strip()
    if not prompt:
        raise Refused("prompt: empty; describe the image to make")
    n = integer(body, "batch_size", 1, 1) * integer(body, "n_iter", 1, 1)
    if n > MAX_IMAGES:
        raise Refused(f"batch_size x n_iter: {n} images; at most {MAX_IMAGES} per request")
    seed = integer(body, "seed", -1, -1)
    override = body.get("override_settings") or {}
    if not isinstance(override, dict):
        raise Refused("override_settings: expected a mapping of options")
    job = {"prompt": prompt, "model": preset_name(override.get("sd_model_checkpoint", model)),
           "steps": integer(body, "steps", 20, 1), "size": [integer(body, "width", 512, 1),
                                                             integer(body, "height", 512, 1)],
           "seed": None if seed == -1 else seed, "n": n}
    negative = text(body, "negative_prompt").strip()
    if negative:
        job["negative"] = [negative]
    if body.get("tiling"):
        job["tile"] = True
    optimizer = sampler(body.get("sampler_name"))
    if optimizer:
        job["optimizer"] = {"name": optimizer}
    ignored = sorted(k for k in body if k not in USED and not (k == "sampler_name" and optimizer)) + sorted(
        f"override_settings.{k}" for k in override if k != "sd_model_checkpoint")
    return job, ignored


def sampler(name: Any) -> Optional[str]:
    """The optimiser a `sampler_name` names (its key or torch name, any case, as `/samplers` lists them), else None
    (A1111's samplers, such as 'Euler a', have no meaning here: the field is then ignored)."""
    if not isinstance(name, str):
        return None
    wanted = name.strip().lower()  # the keys are the torch names in lower case
    return wanted if wanted in OPTIMIZERS else None


def samplers() -> list[dict]:
    """A1111's `SamplerItem`s (name, aliases, options): vqclip's optimisers, which step the latents as a sampler
    steps a diffusion's."""
    return [{"name": torch_name, "aliases": [key], "options": {"optimizer.name": key}}
            for key, torch_name in OPTIMIZERS.items()]


def upscalers() -> list[dict]:
    """A1111's `UpscalerItem`s (name, model_name, model_path, model_url, scale): the upscaler presets (no server
    path is shown; the URL is the preset's public download)."""
    return [{"name": p.name, "model_name": p.name, "model_path": None,
             "model_url": p.file.urls[0] if p.file.urls else None, "scale": float(p.scale)}
            for p in load_upscalers_file().values()]


def png_info(data: bytes) -> dict:
    """A1111's `PNGInfoResponse` of an image's bytes: `info` its `parameters` text, `parameters` that text parsed
    (Prompt, Negative prompt and the pairs), `items` its other text chunks (vqclip's job among them)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is a bad image, not a warning
            with Image.open(io.BytesIO(data)) as im:
                im.load()  # text chunks after the image data are read too
                chunks = {str(k): v for k, v in getattr(im, "text", {}).items() if isinstance(v, str)}
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise Refused(f"image: not a readable image ({reason(exc)})") from None
    info = chunks.pop("parameters", "")
    parameters = {}
    if info:
        prompt, negative, pairs = parse_parameters(info)
        parameters = {"Prompt": prompt, "Negative prompt": negative, **pairs}
    return {"info": info, "items": chunks, "parameters": parameters}


def preset_name(value: Any) -> str:
    """The preset a `sd_model_checkpoint` names ("mini" or "mini [hash]", as A1111 titles models), or an error."""
    name = str(value).split(" [")[0].strip() if isinstance(value, str) else ""
    if name not in list_presets():
        raise Refused(f"sd_model_checkpoint: no preset {str(value)[:60]!r}; GET /sdapi/v1/sd-models lists them")
    return name


def image_bytes(value: Any, key: str, cap: int) -> bytes:
    """The bytes of a base64 image (a data: URL's prefix allowed), at most `cap` decoded bytes."""
    if not isinstance(value, str):
        raise Refused(f"{key}: expected a base64 image, got {type(value).__name__}")
    value = DATA_URL.sub("", value[:64], count=1) + value[64:]
    if len(value) > (cap + 2) // 3 * 4:  # before decoding
        raise Refused(f"{key}: over the {cap >> 10} KB limit of an image; send a smaller one", 413)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(f"{key}: not base64; send the image's bytes base64-encoded") from None


def fail(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def finals(job: Job) -> list[Path]:
    """The final.png of each run of an ended job: its own, or its batch members' in their order (seed s, s+1, ...;
    not their folders' names' order, where seed=10 comes before seed=9); a member an interrupt left unrun has none."""
    if job.dir is None:
        return []
    folders = [job.dir / m.name for m in job.plan.members] if isinstance(job.plan, Batch) else [job.dir]
    return [f / "final.png" for f in folders if (f / "final.png").is_file()]


def a1111_router(queue: RunQueue, check: Callable[[dict], Awaitable[tuple]],
                 read_body: Callable[[Request, int], Awaitable[Optional[bytes]]],
                 store: Callable[[bytes, str], tuple[str, Image.Image]], uploads: Path, max_upload: int,
                 body_cap: int) -> APIRouter:
    """The `/sdapi/v1` routes over `queue`, given the server's ways to check a page job (`check(job)` -> (plan,
    notes), as the page's are), read a capped body (`read_body(request, cap)`: None past it) and keep an image
    (`store(data, name)` -> (upload id, image) in `uploads`, or a VqclipError)."""
    router = APIRouter(prefix="/sdapi/v1")
    options = {"sd_model_checkpoint": presets()["default"]}

    async def read(request: Request) -> dict:
        body = await read_body(request, body_cap)
        if body is None:
            raise Refused(f"the request is over {body_cap >> 10} KB", 413)
        try:
            data = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            raise Refused("the request is not valid JSON") from None
        if not isinstance(data, dict):
            raise Refused("send a JSON object of fields (prompt, steps, ...)")
        return data

    async def generate(request: Request, img2img: bool) -> Any:
        try:
            body = await read(request)
            job, ignored = to_job(body, options["sd_model_checkpoint"])
            if img2img:
                ignored = [k for k in ignored if k not in USED_IMG]
                job.update(init_keys(body, job))
            planned, notes = await check(job)
            queued = await asyncio.to_thread(queue.submit, planned, notes)
        except Refused as exc:
            return fail(exc.status, str(exc))
        except Busy as exc:
            return fail(503, str(exc))
        except VqclipError as exc:
            return fail(400, str(exc))
        await asyncio.to_thread(queue.wait, queued)
        if queued.state not in ("done", "stopped"):
            return fail(500, f"the run {queued.state}: {queued.error or 'no image'}")
        return answer(body, queued, ignored)

    def init_keys(body: dict, job: dict) -> dict:
        """init.image (and init.mask) from init_images[0] (and mask); denoising_strength is A1111's share of the
        steps that run (steps x strength, at least 1); mask_blur the mask's feather."""
        images = body.get("init_images")
        if not isinstance(images, list) or not images:
            raise Refused("init_images: expected a list with one base64 image")
        strength = body.get("denoising_strength", DENOISE)
        strength = DENOISE if strength is None else strength
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 1:
            raise Refused(f"denoising_strength: expected a number in 0..1, got {str(strength)[:40]!r}")
        job["steps"] = max(1, round(job["steps"] * strength))
        init = {"image": f"upload:{save(images[0], 'init_images[0]')}"}
        if body.get("mask") is not None:
            mask = save(body["mask"], "mask")
            if body.get("inpainting_mask_invert"):  # A1111's white = change; inverted: black = change
                path = uploads / f"{mask}.png"
                with Image.open(path) as im:
                    inverted = ImageOps.invert(im.convert("RGB"))
                inverted.save(path)
            init["mask"] = f"upload:{mask}"
            init["mask_feather"] = integer(body, "mask_blur", 4, 0, 256)
        return {"init": init}

    def save(value: Any, key: str) -> str:
        try:
            return store(image_bytes(value, key, max_upload), key)[0]
        except VqclipError as exc:
            raise Refused(str(exc).replace("upload: ", "", 1)) from None

    def answer(body: dict, job: Job, ignored: list[str]) -> dict:
        files = finals(job)
        metas = [read_metadata(f) for f in files]
        infotexts, sizes = [], []
        for f in files:
            with Image.open(f) as im:
                infotexts.append(im.text.get("parameters", ""))
                sizes.append(im.size)
        cfg = metas[0]["config"] if metas else {}
        width, height = sizes[0] if sizes else (None, None)  # as made: the size rounded to the image model's factor
        info = {"prompt": cfg.get("prompt"), "negative_prompt": ", ".join(cfg.get("negative") or []),
                "all_prompts": [m["config"]["prompt"] for m in metas], "seed": metas[0].get("seed") if metas else None,
                "all_seeds": [m.get("seed") for m in metas], "width": width, "height": height,
                "steps": cfg.get("steps"),
                "sd_model_name": cfg.get("model"), "infotexts": infotexts, "interrupted": job.state == "stopped",
                "ignored": ignored, "run": job.dir.name if job.dir else None, "notes": list(job.notes)}
        images = [base64.b64encode(f.read_bytes()).decode() for f in files]
        return {"images": images, "parameters": {k: v for k, v in body.items() if k not in ("init_images", "mask")},
                "info": json.dumps(info)}

    @router.post("/txt2img")
    async def txt2img(request: Request):
        return await generate(request, img2img=False)

    @router.post("/img2img")
    async def img2img(request: Request):
        return await generate(request, img2img=True)

    def current() -> Optional[Job]:
        jobs = queue.jobs()
        return next((j for j in jobs if j.state == RUNNING), None)

    @router.get("/progress")
    async def progress():
        job = current()
        state = {"skipped": False, "interrupted": False, "job": "", "job_count": 0, "job_timestamp": "0",
                 "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
        if job is None:
            return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None}
        state.update(job=job.id, job_count=sum(j.state not in ENDED for j in queue.jobs()),
                     interrupted=job.stop.is_set(), sampling_step=job.step, sampling_steps=job.total)
        preview = base64.b64encode(job.preview).decode() if job.preview is not None else None
        return {"progress": job.step / job.total if job.total else 0.0, "eta_relative": job.eta or 0.0,
                "state": state, "current_image": preview, "textinfo": f"step {job.step} of {job.total}"}

    @router.post("/interrupt")
    async def interrupt():
        job = current()
        if job is not None:
            queue.cancel(job.id)  # stopped at the end of its step; its frames and final.png are kept
        return {}

    @router.post("/skip")
    async def skip():
        return await interrupt()

    @router.get("/scripts")
    async def scripts():  # clients ask which scripts are installed before their first request
        return {"txt2img": [], "img2img": []}

    @router.get("/options")
    async def get_options():
        return dict(options)

    @router.post("/options")
    async def set_options(request: Request):
        try:
            body = await read(request)
            if "sd_model_checkpoint" in body:
                options["sd_model_checkpoint"] = preset_name(body["sd_model_checkpoint"])
        except Refused as exc:
            return fail(exc.status, str(exc))
        return None

    @router.get("/samplers")
    async def get_samplers():
        return samplers()

    @router.get("/upscalers")
    async def get_upscalers():
        return upscalers()

    @router.post("/png-info")
    async def get_png_info(request: Request):
        try:
            body = await read(request)
            value = body.get("image")
            if isinstance(value, str) and not value.strip():  # as A1111 answers an empty image
                return {"info": "", "items": {}, "parameters": {}}
            return await asyncio.to_thread(png_info, image_bytes(value, "image", max_upload))
        except Refused as exc:
            return fail(exc.status, str(exc))

    @router.get("/sd-models")
    async def sd_models():
        return [{"title": p["name"], "model_name": p["name"], "hash": None, "sha256": None, "filename": p["name"],
                 "config": None, "state": p["state"], "description": p["description"]}
                for p in presets()["presets"]]

    return router
