"""The one run path: a resolved job and its models, run by its mode on the one loop, into a run folder or in memory.

Every entry point uses it: each CLI command (generate, run, zoom, restyle, resume), the Python API
(`vqclip.Pipeline`) and bench; a resume is the same run given a saved state. `generate` runs a job in memory;
`run_job` adds the run folder: job.yaml, frames, state.pt, final.png (with the job inside) and the video.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Optional

import open_clip
import torch

from .._version import __version__
from ..config import GenerateConfig, SteerEntry, check_inputs, to_dict, to_yaml
from ..draw.registry import uses_vqgan
from ..errors import VqclipError, WriteError
from ..files.atomic import write_text
from ..files.images import load_image, save_mask, save_png
from ..files.infotext import job_parameters
from ..files.runfolder import MASK_FILE, RunFolder, run_folder
from ..files.video import inbetween_count, mux_audio, read_frames, write_frames
from ..models.presets import get_preset
from ..models.resolve import preset_clip
from ..modes.base import GenerateResult, Mode, RunContext
from ..modes.registry import load, mode_name
from ..nets.device import cudnn_benchmark, pick_device, seeded, threads
from ..nets.load import ModelCache, Models, load_models
from ..nets.memory import is_out_of_memory, out_of_memory_message
from ..optim.interpolate import inbetweens
from ..optim.loop import AfterStep, Callback
from ..optim.schedules import job_texts
from ..optim.steer import Steering, entry_change
from .branch import write_branch
from .callbacks import ProgressBar, SaveFrames, StopOnFlag, wants_trials
from .devices import across_devices, check_devices
from .losslog import LossLog, start_memory, write_speed
from .judging import Judging, check_judge, judged, load_judge
from .regionfiles import copies, save_region_masks, with_masks
from .statefile import StateSaver, job_settings, save_state
from .upscale import prepare_upscaler, upscaled_name, write_upscaled

log = logging.getLogger("vqclip")


def resolve_seed(seed: Optional[int]) -> int:
    """The given seed, or for none (or -1, as in other generators) a fresh random one, recorded with the outputs so
    the run can be repeated."""
    return int(seed) if seed is not None and seed != -1 else secrets.randbelow(2**31)


def mode_for(cfg: GenerateConfig) -> Mode:
    """The mode a job runs in (its `mode`, auto resolved by `vqclip.modes.registry.mode_name`): a restyle, a zoom
    video, or a still image (story and best of n included)."""
    return load(mode_name(cfg))()


def versions() -> dict[str, str]:
    """Versions of vqclip and the libraries that shape its output."""
    return {"vqclip": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__}


def generate(cfg: GenerateConfig, models: Models, callbacks: Iterable[Callback] = (),
             device: Optional[torch.device] = None, *, saved: Optional[dict] = None, frames=None,
             after: Iterable[AfterStep] = (), mode: Optional[Mode] = None,
             trials: Optional[dict] = None, steering: Optional[Steering] = None) -> GenerateResult:
    """Run one job in memory with the global RNG forked and seeded, so the same seed gives the same image, on the job's
    CPU threads (`threads`, restored after).

    Args:
        cfg: the resolved job; a seed of None or -1 is drawn (and returned in the result).
        models: its loaded networks (`vqclip.nets.load.load_models`).
        callbacks: see each step's `StepEvent` and may stop the run; those with `trials = True` also see best-of-n's
            trial steps.
        device: default: the job's.
        saved: a `RunState.state_dict()` to continue from (resume).
        frames: where frames go (`FrameSink`); None keeps none.
        after: hooks `(state, event)` after each update (the state saver).
        mode: the job's mode already prepared for `cfg` (`Mode.prepare`, as `run_job` does it once); default: the
            job's (`mode_for`), prepared here.
        trials: a memo the images of one batch of starts share (`candidates.keep`): its trials run once.
        steering: a `Steering` another thread (or a callback) steers the run with; its `entries` record the changes,
            and it is finished when the run ends (a later steer is an error).
    """
    note_vocabulary(cfg)
    device = device or pick_device(cfg.device)
    seed = resolve_seed(cfg.seed)
    cfg = replace(cfg, seed=seed)
    kind = mode or mode_for(cfg)
    if steering is not None and not kind.steerable:
        raise VqclipError(f"steer: a {kind.name} run cannot be steered yet; steer a still image or a zoom")
    if mode is None:  # a mode given is prepared already: a restyle reads its whole video once, not twice
        mode = mode_for(cfg)
        cfg = mode.prepare(cfg, models)
    if steering is not None:  # a steer is checked against the job; a steered text gets the vocabulary notice
        steering.job = cfg
        steering.on_take = lambda change: note_vocabulary(steered_texts(cfg, change))
    callbacks = list(callbacks)
    every = mode.frame_every(cfg)
    own = [SaveFrames(frames.write, every)] if frames is not None and every > 0 else []
    ctx = RunContext(cfg, models, device, seed, [*own, *callbacks], [cb for cb in callbacks if wants_trials(cb)],
                     frames, list(after), saved, trials, steering)
    with threads(cfg.threads), seeded(device, seed), cudnn_benchmark(cfg.cudnn_benchmark and device.type == "cuda"):
        try:
            result = mode.run(ctx)
        finally:
            if steering is not None:
                steering.finish()
        if result.state is not None:  # the state to resume from, with the run's own RNG states (not the caller's)
            result.saved = result.state.state_dict()
    return result


def steered_texts(cfg: GenerateConfig, change: dict) -> GenerateConfig:
    """The job with only the texts a steer `change` brings (its prompt and negatives), for `note_vocabulary`."""
    return replace(cfg, prompt=change.get("prompt") or "", negative=list(change.get("negative") or []), story=[],
                   steer=[])


def note_vocabulary(cfg: GenerateConfig) -> None:
    """One notice when the job's texts (its `steer:` entries' too) use words that its preset's CLIP does not know (a
    preset that declares its vocabulary, as `mini` declares its world's caption grammar): the run goes on, but those
    words will not show."""
    if not cfg.model:
        return
    try:
        preset = get_preset(cfg.model)
    except VqclipError:  # a job from elsewhere whose preset is not defined here: nothing to compare with
        return
    if preset.vocabulary is None or preset_clip(preset, check=False)[0] not in [c.model for c in cfg.clip]:
        return
    steered = [steered_texts(cfg, entry_change(e)) for e in cfg.steer]
    unknown = preset.vocabulary.unknown([t for job in (cfg, *steered) for t in job_texts(job)])
    if unknown:
        log.info("the %s preset knows only its captions, %s; %s %s not among its words and will not show; try e.g. "
                 "'%s'", preset.name, preset.vocabulary.grammar, ", ".join(f"'{w}'" for w in unknown),
                 "is" if len(unknown) == 1 else "are", preset.vocabulary.example)


class FolderFrames:
    """A run folder's frames: written atomically as frames/NNNNNN.png. On a resume, the frames from before the saved
    step are kept, those after it are made again, and any not made again are removed at the end (`clean`)."""

    def __init__(self, folder: RunFolder, keep_before: Optional[int] = None, on_write=None):
        self.folder, self.on_write = folder, on_write  # on_write(index, path, image): after each frame (the judge)
        found = folder.frames()
        self.saved = [p for i, p in found if keep_before is not None and i < keep_before]
        self.stale = [p for i, p in found if keep_before is not None and i >= keep_before]

    def write(self, index: int, image) -> Path:
        """frames/NNNNNN.png, then latest.png the same image (each atomic)."""
        path = save_png(image, self.folder.frame(index))
        if path not in self.saved:
            self.saved.append(path)
        self.folder.show_latest(path)
        if self.on_write is not None:
            self.on_write(index, path, image)
        return path

    def existing(self) -> list[Path]:
        return [p for _, p in self.folder.frames()]

    def clean(self) -> None:
        for path in set(self.stale) - set(self.saved):
            path.unlink(missing_ok=True)


@dataclass
class RunResult:
    """A finished (or stopped) run: its folder, files and the generation result."""

    dir: Path
    final: Path
    video: Optional[Path]
    frames: list[Path]
    config: GenerateConfig
    result: GenerateResult
    upscaled: Optional[Path] = None  # final_xN.png when output.upscale.model is set

    @property
    def interrupted(self) -> bool:
        """Stopped before its end by the user (patience ending a run is its end)."""
        return self.result.stopped and self.result.info.get("stopped_by") != "patience"

    def _repr_png_(self) -> bytes:
        """Notebooks show the run's final.png inline."""
        return Path(self.final).read_bytes()


def run_job(cfg: GenerateConfig, *, cache: Optional[ModelCache] = None, stop: Optional[threading.Event] = None,
            extra_callbacks: Iterable[Callback] = (), folder: Optional[RunFolder] = None,
            saved: Optional[dict] = None, trials: Optional[dict] = None, mode: Optional[Mode] = None,
            steering: Optional[Steering] = None) -> RunResult:
    """Run one job into its run folder; frames are kept and final.png + video written even when stopped early.

    Args:
        cfg: the job (`vqclip.runs.jobs.build_config`).
        cache: loaded models shared across jobs.
        stop: an event that stops the run at the end of its step (Ctrl-C, a page's Stop button).
        extra_callbacks: more callbacks (see `generate`).
        folder: an existing run folder to continue (resume, with `saved` its state.pt); default: a new one at
            output.dir (or outputs/<time>-<prompt>), never overwriting a run. The folder is locked while the run
            writes it (`RunFolder.lock`): another run of it meanwhile is a one-line error.
        trials: see `generate`.
        mode: the mode to run the job in (e.g. a restyle of a share of its frames, `Restyle(first=...)`); default:
            the job's (`mode_for`).
        steering: see `generate`; each change taken is recorded in job.yaml as it is taken (and in state.pt's and
            final.png's job), so the folder's job replays the steered run.
    """
    check_inputs(cfg)
    check_devices(cfg)
    if steering is not None and len(cfg.devices) > 1:
        raise VqclipError("steer: a run across devices cannot be steered live (the other devices' processes run the "
                          "job as it started); run it on one device (--device) to steer it, or give the changes as "
                          "the job's steer: entries")
    if judged(cfg):
        check_judge(cfg)  # before anything loads: a judge that also guides is one line
    # 1. Device, seed and folder (before loading anything heavy, so bad input fails fast)
    device = pick_device(cfg.devices[0] if cfg.devices else cfg.device)
    resumed = folder is not None
    if not resumed:
        cfg = replace(cfg, seed=resolve_seed(cfg.seed))
        folder = run_folder(cfg.output.dir, cfg.prompt)
        cfg = replace(cfg, output=replace(cfg.output, dir=str(folder.path)))
    if resumed:
        folder.lock()  # a new folder is locked when it is claimed, once the models are loaded
    try:
        with threads(cfg.threads):  # the job's CPU threads for all of it (the upscale too), as `generate` runs them
            if len(cfg.devices) > 1:  # one run across devices: the others' processes run it beside this one (rank 0)
                with across_devices(cfg, saved, generate):
                    return _run_job(cfg, device, resumed, folder, cache, stop, extra_callbacks, saved, trials, mode,
                                    steering)
            return _run_job(cfg, device, resumed, folder, cache, stop, extra_callbacks, saved, trials, mode,
                                    steering)
    finally:
        folder.unlock()  # on any exit: an error, Ctrl-C, the end


def _run_job(cfg, device, resumed, folder, cache, stop, extra_callbacks, saved, trials, mode=None,
             steering=None) -> RunResult:
    """`run_job` from its models on, the folder chosen."""
    # 2. Models (before the folder is made, so a failed download leaves no empty run behind), then the mode's job;
    # the upscaler too, so a missing or wrong one fails now, not after the run
    up = cfg.output.upscale
    upscaler = prepare_upscaler(up.model, up.scale, device, cfg.output.progress) if up.model else None
    models = load_models(cfg, device, cache)
    judge = load_judge(cfg, models, device, cache) if judged(cfg) else None  # nothing of it when off
    mode = mode or mode_for(cfg)
    cfg = mode.prepare(cfg, models)  # once: `generate` runs the mode prepared here
    if not resumed:
        given, job = cfg.init.mask, cfg  # an edit's mask and region masks go into the folder; its job names them
        if given:
            cfg = replace(cfg, init=replace(cfg.init, mask=str((folder.path / MASK_FILE).absolute())))
        cfg = with_masks(cfg, copies(cfg, folder.path))
        folder.claim(to_yaml(cfg))
        if given:
            save_mask(given, cfg.init.mask)
        save_region_masks(job, folder.path)
    # 3. Run, saving frames and state as it goes
    start = int(saved["step"]) if saved else 0
    judging = Judging(judge, cfg, folder.path, start if mode.saves_state else 0) if judge is not None else None
    frames = FolderFrames(folder, start if mode.saves_state else None, judging and judging.scored)
    callbacks: list[Callback] = list(extra_callbacks)
    if judging is not None:
        callbacks.append(judging)  # after the frames' writer: it sees this step's score
    bar = None
    if cfg.output.progress:
        done = start if mode.saves_state else mode.steps_done(cfg, frames.existing())
        bar = ProgressBar(mode.total(cfg), initial=done, desc=mode.name if mode.name == "restyle" else
                          "resume" if resumed else "generate")
        callbacks.append(bar)
    if stop is not None:
        callbacks.append(StopOnFlag(stop))
    losses = LossLog(folder.path, mode.frame_every(cfg), cfg.state_every if mode.saves_state else 0,
                     start if mode.saves_state else 0)  # losses.csv, and the pace for run.json
    callbacks.append(losses)
    start_memory(device)
    last: list = []  # across devices: the newest scored image, for final.png should a device be lost mid-run
    if len(cfg.devices) > 1:
        def keep_last(event) -> None:
            if event.image is not None and not event.trial:
                last[:] = [event]
        callbacks.append(keep_last)
    job = job_settings(cfg)  # recorded in state.pt: a resume of another job is refused
    every = cfg.state_every if mode.saves_state else None  # for the hint after a failed write
    after = [StateSaver(folder.state, cfg.state_every, cfg.steps, job)] if mode.saves_state else []
    steered = [cfg]  # the job with the steers taken so far: what job.yaml, state.pt and final.png record
    if steering is not None:
        def record(entries: list[dict]) -> None:
            steered[0] = replace(cfg, steer=[SteerEntry(**e) for e in entries])
            write_text(folder.job, to_yaml(steered[0]))
            for saver in after:
                saver.job = job_settings(steered[0])
        steering.on_record = record
        if mode.saves_state:  # a branch starts from a state: a restyle (frames from its input) has none to give
            steering.on_branch = functools.partial(write_branch, cfg, folder)
    try:
        result = generate(cfg, models, callbacks, device, saved=saved, frames=frames, after=after, mode=mode,
                          trials=trials, steering=steering)
        cfg = steered[0]
        job = job_settings(cfg)
        if mode.saves_state:  # stopped during best-of-n's trials: every start, and the trials go on at resume
            save_state(result.saved, folder.state, cfg.steps, job)  # before final.png and the video, which need room
        if judging is not None and judging.data["stopped_by"]:
            result.info["stopped_by"] = judging.data["stopped_by"]  # final.png and `interrupted` say why it ended
        if judging is not None and cfg.output.keep_best:
            judging.record_in(result.info)  # final.png records the best frame's step (the last frame's scored too)
        losses.flush()
        write_speed(folder.path, losses.speed(device, start, result.steps))
        done = finish(cfg, folder, result, mode, frames, upscaler)
        if cfg.output.report:
            write_report_at_end(folder.path)
        return done
    except WriteError as exc:  # a full disk, no permission, the folder removed: what was written is kept
        if not resumed:
            folder.release()
        raise exc.with_hint(resume_hint(folder, every)) from None
    except BaseException as exc:
        if last and isinstance(exc, RuntimeError) and folder.path.is_dir():  # a device lost mid-run (gloo, NCCL)
            write_final(cfg, folder, last[0].image[:1], last[0].step, stopped=True)  # `vqclip resume` goes on
        if not resumed:
            folder.release()  # failed before making anything: leave no folder that blocks this --out
        if is_out_of_memory(exc):  # frames and state.pt written so far stay; say what to lower
            w, h = cfg.size
            kept = f"; what was written is kept ({resume_hint(folder, every)})" if folder.path.is_dir() else ""
            raise VqclipError(out_of_memory_message(w, h, cfg.cutouts.n, exc, cfg.memory) + kept) from None
        raise
    finally:
        if bar:
            bar.close()


def write_report_at_end(folder: Path) -> Optional[Path]:
    """report.html and its plots at the end of a run (`vqclip.report`); without matplotlib one notice and none. A
    report that cannot be made is a warning: the run's own files are all written by then."""
    from ..report.page import MissingPlotting, write_report  # here: the report is made once, at the end

    try:
        return write_report(folder, quiet=True)
    except MissingPlotting as exc:
        log.info("%s", exc)
    except (VqclipError, OSError, ValueError) as exc:
        log.warning("%s: no report.html (%s); `vqclip report %s` makes it", folder, exc, folder)
    return None


def resume_hint(folder: RunFolder, state_every: Optional[int]) -> str:
    """How to go on after a failed write: what `vqclip resume` will do with what the folder holds (go on from its
    state.pt; with none saved yet, start over from step 0; a restyle, whose `state_every` is None: go on at its first
    missing frame), or to run the job again when nothing is left."""
    if not folder.job.is_file():
        return f"nothing of the run is left in {folder.path}: run the job again"
    command = f"`vqclip resume {folder.path}`"
    if state_every is None:
        return f"then {command} goes on at the first missing frame"
    if folder.state.is_file():
        return f"then {command} goes on from the last saved state ({folder.state.name})"
    when = "only at the end of a run" if state_every == 0 else f"first after step {state_every}"
    return (f"then {command} starts the run over from step 0 (no {folder.state.name} yet: state_every {state_every} "
            f"saves it {when})")


def write_final(cfg: GenerateConfig, folder: RunFolder, image, steps: int, stopped: bool,
                info: Optional[dict] = None) -> tuple[Path, dict]:
    """final.png of image [1,3,H,W] after `steps` steps, with the job inside (JSON) and A1111's parameters; returns
    its path and that metadata."""
    metadata = {"prompt": cfg.prompt, "seed": cfg.seed, "steps_done": steps, "stopped": stopped, **(info or {}),
                "config": to_dict(cfg), "versions": versions()}
    return save_png(image, folder.final, metadata, job_parameters(metadata, uses_vqgan(cfg.drawer.name))), metadata


def finish(cfg: GenerateConfig, folder: RunFolder, result: GenerateResult, mode: Mode,
           frames: FolderFrames, upscaler=None) -> RunResult:
    """The last frame, the video, final.png (with its job inside) and, with an `upscaler`, final_xN.png of a run
    whose frames so far are `frames`; final.png after the video, so that a run whose video could not be written (a
    full disk) is not taken for a finished one, and the upscale last, so that a slow one cannot cost the others."""
    saved = list(result.frames or frames.saved)
    if mode.final_frame and mode.frame_every(cfg) > 0:  # the final image is the last frame (it follows the last update)
        saved.append(frames.write(result.steps, result.image))
    frames.clean()
    video = None
    if cfg.output.video and saved:
        fmt, audio, n = cfg.output.video_format, mode.audio(cfg), cfg.output.interpolate
        count = inbetween_count(len(saved), n)  # with n in-betweens per gap at n+1 times the fps: the same length
        fps = mode.fps(cfg, count) if cfg.output.video_length else mode.fps(cfg, len(saved)) * (n + 1)
        frames = inbetweens(read_frames(saved), n, cfg.output.interpolate_method, fps / (n + 1))
        video = folder.video(mode.video_name, fmt)
        if fmt == "mp4" and audio is not None:  # the frames, then the input's audio muxed in (both atomic)
            silent = folder.silent_video(mode.video_name)
            try:
                write_frames(frames, silent, fps, fmt)
                mux_audio(silent, audio, video, count / fps)
            finally:
                silent.unlink(missing_ok=True)
        else:
            write_frames(frames, video, fps, fmt, cfg.output.gif_max_side)
    final, metadata = write_final(cfg, folder, result.image, result.steps, result.stopped, result.info)
    upscaled = None
    if upscaler is not None and result.stopped:  # stopped by the user: what it has is saved, nothing more starts
        log.info("the run was stopped: final.png is not upscaled; `vqclip upscale %s --model %s` does it", final,
                 cfg.output.upscale.model)
    elif upscaler is not None:
        up = cfg.output.upscale
        scale = up.scale or upscaler.scale
        upscaled = write_upscaled(upscaler, load_image(final), upscaled_name(final, scale),  # as `vqclip upscale`
                                  scale=scale, tile=up.tile, metadata=metadata, source=final.name)
    return RunResult(folder.path, final, video, saved, cfg, result, upscaled)
