"""A job from its config layers: defaults <- preset <- a PNG's job (`--from`) <- YAML files <- the command line, and
the jobs of a job file (`jobs:` lists)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from ..config import GenerateConfig, merge_layers
from ..errors import VqclipError
from ..files.images import read_metadata
from ..files.jobyaml import load_yaml
from ..models.presets import DEFAULT_PRESET
from ..models.resolve import local_embedded, preset_layer


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
        if isinstance(data, dict) and "sweep" in data:
            raise VqclipError(f"{y}: holds a sweep (`sweep:`), which --config cannot take; run it with "
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
