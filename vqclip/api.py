"""The Python API, as diffusers users would expect it: a `Pipeline` of loaded models that makes images from prompts.

    import vqclip
    pipe = vqclip.Pipeline.from_preset("mini", device="cpu")
    out = pipe("a red circle on a blue background", steps=100, seed=1)    # any job key as a keyword
    out.images[0]                                                          # a PIL image
    for event in pipe.stream("a ^ b", steps=60, seed=3): ...              # live StepEvents; .stop() ends the run
    run = pipe.run("configs/story.yaml", out="outputs/x")                  # a run folder, as `vqclip run` writes it

It drives the same run path as the command line (vqclip.runs.pipeline), so the same job gives the same pixels.
"""

from __future__ import annotations

import contextlib
import queue
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np
from PIL import Image
from torch import Tensor

from .config import GenerateConfig, SteerEntry, check_inputs
from .errors import VqclipError
from .files.images import to_pil
from .modes.base import GenerateResult
from .nets.device import pick_device
from .nets.load import ModelCache, Models, load_models
from .optim.loop import Callback, StepEvent
from .optim.steer import Steering
from .runs.callbacks import StopOnFlag, with_trials
from .runs.batch import Batch
from .runs.jobs import build_config, jobs_from_file
from .runs.pipeline import RunResult, generate, run_job
from .runs.plan import place, plan, run_plan


@dataclass
class PipelineOutput:
    """What a call returns: `images` (PIL; one per run), the final latents [1,E,h,w], the loss curve, the seed (drawn
    when none was given), the steps done, whether a callback stopped the run, and the resolved job."""

    images: list[Image.Image]
    latents: Tensor
    losses: list[float]
    seed: int
    steps: int
    stopped: bool
    config: GenerateConfig
    result: GenerateResult  # with the image as a tensor [1,3,H,W] in [0,1]

    @classmethod
    def of(cls, result: GenerateResult, cfg: GenerateConfig) -> "PipelineOutput":
        return cls([to_pil(result.image)], result.z, result.losses, result.seed, result.steps, result.stopped,
                   cfg, result)

    def _repr_png_(self) -> bytes:
        """Notebooks show the image inline."""
        import io

        buffer = io.BytesIO()
        self.images[0].save(buffer, format="PNG")
        return buffer.getvalue()


class Stream:
    """A run in a background thread, seen as its live `StepEvent`s (best-of-n's trial steps too): iterate over it;
    `stop()` ends the run at the end of its step (the result is kept); `steer(prompt=..., lr=...)`, `pause()` and
    `resume()` steer it from the next step on (`steering`; the result's config records each change); `result` is the
    `PipelineOutput` once the iteration is over. An error of the run is raised by the iteration. A stream given a
    folder (`Pipeline.stream(..., out=...)`) writes its run there (`run` is its `RunResult` at the end) and can
    `branch(...)` it."""

    _END = object()

    def __init__(self, pipe: "Pipeline", cfg: GenerateConfig, callbacks: list[Callback],
                 files: Optional[contextlib.AbstractContextManager] = None, out: Optional[str | Path] = None):
        self._files = files  # what the run reads and the stream removes at its end (a mask given as an image)
        self._events: queue.Queue = queue.Queue()
        self._flag = threading.Event()
        self._out = out
        self.result: Optional[PipelineOutput] = None
        self.run: Optional[RunResult] = None
        self._error: Optional[BaseException] = None
        self.steering = Steering()
        feed = with_trials(lambda event: self._events.put(event))
        self._thread = threading.Thread(target=self._work, args=(pipe, cfg, [feed, *callbacks, StopOnFlag(self._flag)]),
                                        daemon=True, name="vqclip-stream")
        self._thread.start()

    def _work(self, pipe: "Pipeline", cfg: GenerateConfig, callbacks: list[Callback]) -> None:
        try:
            if self._out is None:
                self.result = pipe._generate(cfg, callbacks, self.steering)
            else:  # into a run folder, as `Pipeline.run` writes it: job.yaml, frames, state.pt, final.png
                cfg = replace(cfg, output=replace(cfg.output, dir=str(self._out)))
                self.run = run_job(cfg, cache=pipe.cache, extra_callbacks=callbacks, steering=self.steering)
                self.result = PipelineOutput.of(self.run.result, self.run.config)
        except BaseException as exc:  # handed to the iterating thread, which raises it
            self._error = exc
        finally:
            if self._files is not None:
                self._files.__exit__(None, None, None)
            self._events.put(self._END)

    def __iter__(self) -> Iterator[StepEvent]:
        while True:
            event = self._events.get()
            if event is self._END:
                break
            yield event
        self._thread.join()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """End the run at the end of its current step."""
        self._flag.set()
        self.steering.resume()  # a paused run ends too

    def steer(self, **change: Any) -> None:
        """Change the prompt and/or lr from the start of the next step (see `vqclip.optim.steer.Steering.steer`)."""
        self.steering.steer(**change)

    def branch(self, stop: bool = False, **changes: Any) -> Future:
        """Fork the run at the start of its next step into a new run folder beside the stream's (`out` + "-b1",
        ...) with `changes` (prompt, lr) from there; with `stop`, this run stops at the end of that step. Returns a
        Future: `.result()` is the child's folder once the loop has written it (a moment, or until the run is
        resumed when paused); `vqclip.runs.resume.resume_run(child)` runs it (see `vqclip.optim.steer.Steering.branch`)."""
        if self._out is None:
            raise VqclipError("branch: this stream runs in memory, with no run folder to branch beside; give "
                              "Pipeline.stream an out= folder to branch it")
        return self.steering.branch(stop=stop, **changes)

    def pause(self) -> None:
        """Hold the run before its next step (the image is untouched) until `resume()`."""
        self.steering.pause()

    def resume(self) -> None:
        """Let a paused run go on."""
        self.steering.resume()


class Pipeline:
    """Loaded models and the job layers they come with (a preset's defaults, or named files), ready to run jobs.

    Args:
        layers: config layers beneath each call's keywords, e.g. [("preset", {"model": "mini"})].
        device: auto, cpu, cuda, cuda:N or mps.
        cache: loaded models to share (each network is loaded once per device).
    """

    def __init__(self, layers: list[tuple[str, dict]], device: str = "auto", cache: Optional[ModelCache] = None):
        self.device = pick_device(device)
        self.layers = [*layers, ("Pipeline", {"device": str(self.device)})]
        self.cache = cache or ModelCache()

    @classmethod
    def from_preset(cls, name: str, device: str = "auto") -> "Pipeline":
        """A pipeline of a preset's models (fetched once if needed) and its job defaults; `mini` runs offline."""
        pipe = cls([("preset", {"model": name})], device)
        pipe.models()  # load now: a missing model is an error here, not at the first call
        return pipe

    @classmethod
    def from_files(cls, vqgan_config: str | Path, vqgan_checkpoint: str | Path, clip: Any = None,
                   device: str = "auto") -> "Pipeline":
        """A pipeline of a taming VQGAN (YAML + checkpoint) and CLIP models: `clip` is an open_clip name, a mapping
        {model, pretrained, weight}, or a list of them (default ViT-B-32 / openai)."""
        layer: dict = {"vqgan": {"config": str(vqgan_config), "checkpoint": str(vqgan_checkpoint)}}
        if clip is not None:
            layer["clip"] = clip
        pipe = cls([("files", layer)], device)
        pipe.models()
        return pipe

    def config(self, prompt: Optional[str] = None, **job: Any) -> GenerateConfig:
        """The resolved job of a call: the pipeline's layers, then `prompt` and the keywords (nested as dicts, e.g.
        cutouts={"n": 16}); no progress bar unless output={"progress": True}."""
        keys = dict(job)
        if prompt is not None:
            keys["prompt"] = prompt
        quiet = [("Pipeline", {"output": {"progress": False}})]
        return _one_image(build_config(keys, base=[*self.layers[:1], *quiet, *self.layers[1:]],
                                       source="Pipeline keywords"))

    def models(self, cfg: Optional[GenerateConfig] = None) -> Models:
        """The loaded models of a job (default: of the pipeline's own layers)."""
        return load_models(cfg or self.config(), self.device, self.cache)

    def _generate(self, cfg: GenerateConfig, callbacks: Iterable[Callback] = (),
                  steering: Optional[Steering] = None) -> PipelineOutput:
        check_inputs(cfg)
        result = generate(cfg, self.models(cfg), callbacks, self.device, steering=steering)
        if steering is not None:  # the job as steered: running it again replays the steers
            cfg = replace(cfg, steer=[SteerEntry(**e) for e in steering.entries])
        return PipelineOutput.of(result, cfg)

    def __call__(self, prompt: Optional[str] = None, *, callbacks: Iterable[Callback] = (), mask: Any = None,
                 **job: Any) -> PipelineOutput:
        """Make an image: `prompt` ("text:weight|text:weight", or a story "a ^ b") and any job key as a keyword
        (steps=100, seed=1, size=[128, 96], cutouts={"n": 16}, ...). `callbacks` see each `StepEvent` and may
        stop the run. `mask` edits init.image (white may change): a path, a PIL image or a tensor [H,W] in [0,1]."""
        with mask_file(mask) as path:
            return self._generate(self.config(prompt, **with_mask(job, path)), callbacks)

    def stream(self, prompt: Optional[str] = None, *, callbacks: Iterable[Callback] = (), mask: Any = None,
               out: Optional[str | Path] = None, **job: Any) -> Stream:
        """Run in the background and yield live `StepEvent`s (step, total, loss, losses, image; `.preview` is a PIL
        image); `stop()` on the stream ends the run. Keep torch's global RNG to the stream while it runs. `mask`:
        as for a call. `out`: write the run into this folder as `Pipeline.run` does (then it can be branched)."""
        files = mask_file(mask)
        path = files.__enter__()  # left when the run ends (`Stream._work`)
        try:
            return Stream(self, self.config(prompt, **with_mask(job, path)), list(callbacks), files, out)
        except BaseException:
            files.__exit__(None, None, None)
            raise

    def run(self, job: str | Path | dict, out: Optional[str | Path] = None, *, callbacks: Iterable[Callback] = (),
            stop: Optional[threading.Event] = None, steer: Optional[Steering] = None) -> RunResult | list[RunResult]:
        """Run a job file (one job, or a `jobs:` list) or a job dict into run folders as `vqclip run` does (the one
        planner, `vqclip.runs.plan`): job.yaml, frames, video, state.pt and final.png; a `sweep:`, `n:` or
        `candidates.keep` makes a batch folder with grid.png; a folder that holds the job's finished run is skipped,
        its stopped run resumed. `out` names the run (or batch) folder (one job) or the folder the jobs' folders go in
        (several). `steer`: a `vqclip.Steering` that another thread (or a callback) steers the run with, one image's
        run only; its changes are recorded in the run's job.yaml. Returns the run of a single image, else the list of
        runs."""
        jobs = [("job", job)] if isinstance(job, dict) else [(str(job), keys) for keys in jobs_from_file(job)]
        plans = plan(jobs, None, out, below=self.layers[:1], above=self.layers[1:])
        single = len(plans) == 1 and not isinstance(plans[0], Batch)
        if steer is not None and not single:
            raise VqclipError("steer: a Steering steers the run of one image; this job makes several (a sweep, n: or "
                              "candidates.keep): run them one by one to steer them")
        try:
            runs = run_plan(place(plans), run_job, cache=self.cache, stop=stop, callbacks=list(callbacks),
                            steering=steer)
        finally:  # a folder already finished (skipped): steers are refused
            if steer is not None and not steer.finished:
                steer.finish()
        return runs[0] if single else runs


@contextlib.contextmanager
def mask_file(mask: Any) -> Iterator[Optional[str]]:
    """The path of an edit's mask given as a path (as is), a PIL image or a tensor/array [H,W] in [0,1] (written as
    a grey PNG in a temporary folder, removed afterwards); None for none."""
    if mask is None or isinstance(mask, (str, Path)):
        yield None if mask is None else str(mask)
        return
    if not isinstance(mask, Image.Image):
        array = np.asarray(mask.detach().cpu() if isinstance(mask, Tensor) else mask, dtype=np.float32)
        if array.ndim not in (2, 3, 4) or array.size != array.shape[-1] * array.shape[-2]:
            raise VqclipError(f"mask: a mask is one channel [H,W] in [0,1], got shape {list(array.shape)}")
        array = array.reshape(array.shape[-2:])
        mask = Image.fromarray(np.rint(np.clip(array, 0, 1) * 255).astype(np.uint8), "L")
    with tempfile.TemporaryDirectory(prefix="vqclip-mask-") as folder:
        path = Path(folder) / "mask.png"
        mask.convert("L").save(path)
        yield str(path)


def with_mask(job: dict, path: Optional[str]) -> dict:
    """The call's job keys with init.mask set to `path` (unchanged for None)."""
    if path is None:
        return job
    init = job.get("init") or {}
    return {**job, "init": {**init, "mask": path}}


def _one_image(cfg: GenerateConfig) -> GenerateConfig:
    """A job of one image: a batch (`n`, `candidates.keep`) is refused rather than silently cut to one image."""
    if cfg.n > 1 or cfg.candidates.keep > 1:
        raise VqclipError("n and candidates.keep make a batch of images, which a Pipeline call does not; call it once "
                          "per seed (seed=s, s+1, ...), or run the batch with `vqclip generate --n` / `vqclip run`")
    return cfg


__all__ = ["Pipeline", "PipelineOutput", "Stream", "VqclipError"]
