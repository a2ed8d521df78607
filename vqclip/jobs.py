"""A job from config layers to a finished run folder: final.png (with its config inside), frames, video, job.yaml."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch

from .callbacks import ProgressBar, SaveFrames, StopOnFlag, frame_path
from .config import GenerateConfig, check_inputs, merge_layers, to_dict, to_yaml
from .errors import VqclipError
from .generator import Callback, GenerateResult, Models, pick_device, resolve_seed
from .guide import Guide, load_guide
from .jobyaml import load_yaml
from .models import ClipModel, VQGAN, load_clip, load_vqgan
from .outputs import (atomic_write_text, check_run_dir, claim_run_dir, default_run_dir, read_metadata, release_run_dir,
                      save_png, versions)
from .video import write_video

DEFAULT_PRESET = "imagenet-16384"


def preset_layer(name: str) -> dict:
    """The config layer a preset contributes beneath the user's values: its CLIP and its job defaults."""
    from . import registry

    preset = registry.get_preset(name)
    if preset.embedded:
        resolved = registry.resolve_preset(name, download=False)
        clip, defaults = {"model": resolved.clip_model, "pretrained": resolved.clip_pretrained}, resolved.defaults
    else:
        clip, defaults = {"model": preset.clip_model, "pretrained": preset.clip_pretrained}, preset.defaults
    return {"clip": [clip], **defaults}


def png_layer(path: str | Path) -> dict:
    """The config embedded in a vqclip PNG, minus its output folder (a re-run goes to a new one)."""
    config = dict(read_metadata(path)["config"])
    output = dict(config.get("output") or {})
    output.pop("dir", None)
    config["output"] = output
    return config


def build_config(cli: Optional[dict] = None, yaml_files: Iterable[str | Path] = (), from_png: str | Path | None = None,
                 base: Optional[list[tuple[str, dict]]] = None) -> GenerateConfig:
    """Defaults <- preset <- --from PNG <- YAML files <- CLI, strictly checked; the preset is the last one named."""
    layers: list[tuple[str, dict]] = list(base or [])
    if from_png:
        layers.append((str(from_png), png_layer(from_png)))
    for y in yaml_files:
        data = load_yaml(y)
        if isinstance(data, dict) and "jobs" in data:
            raise VqclipError(f"{y}: holds a list of jobs (`jobs:`), which --config cannot take; run it with "
                              f"`vqclip run {y}`")
        layers.append((str(y), data))
    if cli:
        layers.append(("command line", cli))
    model = next((l["model"] for _, l in reversed(layers) if isinstance(l, dict) and l.get("model")), None)
    named_files = any(isinstance(l, dict) and isinstance(l.get("vqgan"), dict) and l["vqgan"].get("checkpoint")
                      for _, l in layers)
    if model is None and not named_files:
        model = DEFAULT_PRESET
    if model is not None:
        if not isinstance(model, str):
            raise VqclipError(f"model: expected a preset name, got {model!r}")
        preset = {**preset_layer(model), "model": model}
        if any(_is_video(layer) for _, layer in layers):  # best of n picks a still image: a preset's default of it
            preset.pop("candidates", None)                # does not apply to zoom or restyle (asking for it does)
        layers.insert(0, (f"preset {model}", preset))
    return local_weights(merge_layers(layers))


def local_weights(cfg: GenerateConfig) -> GenerateConfig:
    """`cfg` with CLIP and guide files of the embedded preset recorded by another vqclip install (a job.yaml or PNG made
    elsewhere, or before an upgrade moved the package) read from this install's copy."""
    from .registry import local_embedded

    for clip in (*cfg.clip, *cfg.candidates.clip):
        clip.model, clip.pretrained = local_embedded(clip.model), local_embedded(clip.pretrained)
    cfg.guide.model, cfg.guide.weights = local_embedded(cfg.guide.model), local_embedded(cfg.guide.weights)
    return cfg


def _is_video(layer) -> bool:
    """Does a config layer make the job a zoom video or a restyle?"""
    if not isinstance(layer, dict):
        return False
    animation, restyle = layer.get("animation"), layer.get("restyle")
    return (isinstance(animation, dict) and animation.get("mode") == "zoom") or (
        isinstance(restyle, dict) and bool(restyle.get("input")))


@dataclass
class ModelCache:
    """Loaded models by their files and device, so a batch of jobs loads each network once."""

    vqgans: dict = field(default_factory=dict)
    clips: dict = field(default_factory=dict)
    guides: dict = field(default_factory=dict)

    def vqgan(self, config: str, checkpoint: str, device: torch.device) -> VQGAN:
        key = (str(config), str(checkpoint), str(device))
        if key not in self.vqgans:
            self.vqgans[key] = load_vqgan(config, checkpoint, device)
        return self.vqgans[key]

    def clip(self, model: str, pretrained: Optional[str], device: torch.device, cache_dir: Optional[Path]) -> ClipModel:
        from . import registry
        from .clipweights import placed_or_tag

        model, pretrained, like = placed_or_tag(model, pretrained, registry.home())  # a local file of the tag wins
        key = (model, pretrained, str(device))
        if key not in self.clips:
            self.clips[key] = load_clip(model, pretrained, device, cache_dir, like=like)
        return self.clips[key]

    def guide(self, model: str, weights: str, device: torch.device) -> Guide:
        key = (str(model), str(weights), str(device))
        if key not in self.guides:
            self.guides[key] = load_guide(model, weights, device)
        return self.guides[key]


def load_models(cfg: GenerateConfig, device: torch.device, cache: Optional[ModelCache] = None) -> Models:
    """The VQGAN (named files, else the preset's, fetched once), the weighted CLIP models and the guide of a job."""
    from . import registry

    cache = cache or ModelCache()
    scorers = cfg.candidates.clip if cfg.candidates.n > 1 else []  # unused at n = 1: not loaded
    vq_config, vq_ckpt = _fetch_files(cfg, [*cfg.clip, *scorers])
    clip_cache = registry.home() / "clip"
    vqgan = cache.vqgan(vq_config, vq_ckpt, device)
    clips = [(cache.clip(c.model, c.pretrained, device, clip_cache), c.weight) for c in cfg.clip]
    judges = [(cache.clip(c.model, c.pretrained, device, clip_cache), c.weight) for c in scorers]
    g = cfg.guide
    guide = cache.guide(g.model, g.weights, device) if g.model and g.weights and g.weight > 0 else None
    return Models(vqgan, clips, judges, guide)


def _fetch_files(cfg: GenerateConfig, clips: list) -> tuple[str, str]:
    """The job's VQGAN files (named, else the preset's, fetched once), after fetching every CLIP tag's weights as
    well, so that a machine offline gets one error naming every file it lacks."""
    from . import registry
    from .clipweights import clips_missing
    from .download import DownloadError

    vq_config, vq_ckpt = cfg.vqgan.config, cfg.vqgan.checkpoint
    if bool(vq_config) != bool(vq_ckpt):
        raise VqclipError("vqgan: give both config (YAML) and checkpoint, or neither and a --model preset")
    missing = []
    if not vq_config:
        try:
            resolved = registry.resolve_preset(cfg.model or DEFAULT_PRESET, download=True,
                                               progress=cfg.output.progress, fetch_clip_weights=False)
            vq_config, vq_ckpt = str(resolved.vqgan_config), str(resolved.vqgan_checkpoint)
        except DownloadError as exc:
            missing += exc.missing
    missing += clips_missing([(c.model, c.pretrained) for c in clips], registry.home())
    if missing:
        raise DownloadError(missing)
    return vq_config, vq_ckpt


@dataclass
class RunResult:
    """A finished (or stopped) run: its folder, files and the generation result."""

    dir: Path
    final: Path
    video: Optional[Path]
    frames: list[Path]
    config: GenerateConfig
    result: GenerateResult

    @property
    def interrupted(self) -> bool:
        return self.result.stopped


def run_job(cfg: GenerateConfig, *, cache: Optional[ModelCache] = None, stop: Optional[threading.Event] = None,
            extra_callbacks: Iterable[Callback] = (),
            runner: Optional[Callable[[GenerateConfig, Models, list, torch.device], GenerateResult]] = None) -> RunResult:
    """Run one job into its own folder; frames are kept and final.png + video written even when stopped early."""
    check_inputs(cfg)
    if cfg.restyle.input:  # a video in, one generation per frame (vqclip/restyle.py)
        from .restyle import restyle_job
        return restyle_job(cfg, cache=cache, stop=stop, extra_callbacks=extra_callbacks)
    from .animation import frame_every, run_generation
    # 1. Resolve device, seed and folder (before loading anything heavy, so bad input fails fast)
    device = pick_device(cfg.device)
    cfg = replace(cfg, seed=resolve_seed(cfg.seed))
    run_dir = check_run_dir(Path(cfg.output.dir) if cfg.output.dir else default_run_dir(cfg.prompt))
    cfg = replace(cfg, output=replace(cfg.output, dir=str(run_dir)))
    # 2. Models (before the folder is made, so a failed download leaves no empty run behind)
    models = load_models(cfg, device, cache)
    claim_run_dir(run_dir)
    atomic_write_text(run_dir / "job.yaml", to_yaml(cfg))
    # 3. Optimise, saving frames as it goes
    frames = SaveFrames(run_dir / "frames", frame_every(cfg))
    callbacks: list[Callback] = [frames, *extra_callbacks]
    bar = ProgressBar(cfg.steps) if cfg.output.progress else None
    if bar:
        callbacks.append(bar)
    if stop is not None:
        callbacks.append(StopOnFlag(stop))
    try:
        result = (runner or run_generation)(cfg, models, callbacks, device)
    except BaseException:
        release_run_dir(run_dir)  # failed before making anything: leave no folder that blocks this --out
        raise
    finally:
        if bar:
            bar.close()
    frames.keep_start(result.start)  # best of n that ended in its trials: the chosen start's frames
    return finish_run(cfg, run_dir, result, frames.saved)


def finish_run(cfg: GenerateConfig, run_dir: Path, result: GenerateResult, saved: list[Path]) -> RunResult:
    """final.png (with its config inside), the last frame and the video of a run whose frames so far are `saved`."""
    from .animation import frame_every, video_fps

    metadata = {"prompt": cfg.prompt, "seed": cfg.seed, "steps_done": result.steps, "stopped": result.stopped,
                "config": to_dict(cfg), "versions": versions()}
    final = save_png(result.image, run_dir / "final.png", metadata)
    saved = list(saved)
    if frame_every(cfg) > 0:  # the final image is the last frame (it follows the last update)
        saved.append(save_png(result.image, frame_path(run_dir / "frames", result.steps)))
    video = None
    if cfg.output.video and saved:
        video = write_video(saved, run_dir / f"progress.{cfg.output.video_format}", video_fps(cfg, len(saved)),
                            cfg.output.video_format, cfg.output.gif_max_side)
    return RunResult(run_dir, final, video, saved, cfg, result)


def jobs_from_file(path: str | Path) -> list[dict]:
    """The jobs of a YAML file: the file itself, or each entry of its `jobs:` list over the file's other keys."""
    data = load_yaml(path)
    if "jobs" not in data:
        return [data]
    jobs = data.pop("jobs")
    if not isinstance(jobs, list) or not jobs or not all(isinstance(j, dict) for j in jobs):
        raise VqclipError(f"{path}: 'jobs' must be a non-empty list of job mappings")
    return [_deep_merge(data, job) for job in jobs]


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
