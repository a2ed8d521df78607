"""The one typed job config, filled from defaults, a preset, YAML files and CLI overrides, in that order."""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from .errors import VqclipError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "radam", "nadam", "adamax", "adagrad")
SCHEDULES = ("constant", "cosine", "linear")
INITS = ("random", "pixels", "gradient", "flat", "image")
AUGMENTS = ("affine", "perspective", "flip", "jitter", "sharpness", "erasing", "noise")
PRECISIONS = ("auto", "fp32", "bf16")
MAX_SIDE = 4096


@dataclass
class VQGANConfig:
    config: Optional[str] = None  # taming model YAML
    checkpoint: Optional[str] = None  # Lightning .ckpt or .safetensors


@dataclass
class ClipConfig:
    model: str = "ViT-B-32"  # open_clip name, or a path to an architecture JSON
    pretrained: Optional[str] = "openai"  # open_clip tag, a weights file, or null for random weights
    weight: float = 1.0  # share of this model in the loss


@dataclass
class CutoutsConfig:
    n: int = 32  # cutouts per step
    pow: float = 1.0  # >1 favours small cutouts, <1 large ones
    min_size: float = 0.0  # smallest cutout as a fraction of the short side (0: CLIP's input size)
    augments: list[str] = field(default_factory=lambda: ["affine", "perspective", "noise"])
    noise: float = 0.1  # std of the per-cutout noise augment


@dataclass
class OptimizerConfig:
    name: str = "adam"
    lr: float = 0.1
    schedule: str = "constant"  # constant, cosine or linear decay to lr * min_factor
    min_factor: float = 0.1


@dataclass
class InitConfig:
    kind: str = "random"  # random codes, pixels noise, gradient, flat colour, or image
    image: Optional[str] = None  # path, for kind=image (set by --init-image)
    weight: float = 0.0  # keeps the latent near its start (an init image)
    color: Optional[list[float]] = None  # RGB in [0,1] for kind=flat (random when unset)


@dataclass
class OutputConfig:
    dir: Optional[str] = None  # default: outputs/<timestamp>-<prompt-slug>
    save_every: int = 50  # save a frame every K steps (step 0 included); 0 = no frames
    video: bool = True
    video_format: str = "mp4"  # mp4 or gif
    fps: int = 30
    progress: bool = True  # progress bar on stderr


@dataclass
class GenerateConfig:
    prompt: str = ""  # "text:weight|text:weight"; a negative weight pushes away
    negative: list[str] = field(default_factory=list)  # texts to push away (weight -1 each unless text:weight)
    image_prompts: list[str] = field(default_factory=list)  # "path[:weight]"
    model: Optional[str] = None  # a preset name (see `vqclip models`); sets VQGAN, CLIP and defaults
    steps: int = 300
    size: list[int] = field(default_factory=lambda: [256, 256])  # width, height
    seed: Optional[int] = None  # null: drawn at random and recorded
    device: str = "auto"  # auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere), fp32, bf16
    tv_weight: float = 0.0  # total-variation prior on the image (smoothness)
    vqgan: VQGANConfig = field(default_factory=VQGANConfig)
    clip: list[ClipConfig] = field(default_factory=lambda: [ClipConfig()])
    cutouts: CutoutsConfig = field(default_factory=CutoutsConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    init: InitConfig = field(default_factory=InitConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def _normalise(raw: dict, source: str) -> dict:
    """Accept the friendly shorthands: `clip:` as one mapping, `size: 256`, `negative:`/`image_prompts:` as a string."""
    raw = dict(raw)
    if isinstance(raw.get("clip"), (dict, str)):
        raw["clip"] = [raw["clip"]]
    if isinstance(raw.get("clip"), list):
        raw["clip"] = [{"model": c} if isinstance(c, str) else c for c in raw["clip"]]
    if isinstance(raw.get("size"), int) and not isinstance(raw.get("size"), bool):
        raw["size"] = [raw["size"], raw["size"]]
    for key in ("negative", "image_prompts"):
        if isinstance(raw.get(key), str):
            raw[key] = [raw[key]]
    return raw


def _field_names(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a config dataclass, for 'did you mean' hints."""
    names = []
    for f in fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        names.append(prefix + f.name)
        if is_dataclass(default):
            names += _field_names(type(default), prefix + f.name + ".")
    return names


def _explain(exc: OmegaConfBaseException, source: str) -> VqclipError:
    """OmegaConf's multi-line error as one line naming the key, the problem and the fix."""
    key = getattr(exc, "full_key", None) or "?"
    message = str(exc).splitlines()[0]
    if isinstance(exc, ConfigKeyError) or "not in" in message:
        bad = re.search(r"Key '([^']+)'", message)
        name = key if key != "?" else (bad.group(1) if bad else "?")
        close = difflib.get_close_matches(name, _field_names(GenerateConfig), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; see `vqclip generate --help` for the keys"
        return VqclipError(f"{source}: unknown key '{name}'{hint}")
    return VqclipError(f"{source}: {key}: {message}")


def merge_layers(layers: list[tuple[str, dict]]) -> GenerateConfig:
    """Merge (source, mapping) layers over the defaults, strictly: unknown keys and wrong types are errors."""
    merged = OmegaConf.structured(GenerateConfig)
    for source, raw in layers:
        if not isinstance(raw, dict):
            raise VqclipError(f"{source}: expected a mapping of job keys, got {type(raw).__name__}")
        try:
            merged = OmegaConf.merge(merged, _normalise(raw, source))
        except OmegaConfBaseException as exc:
            raise _explain(exc, source) from None
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise _explain(exc, "config") from None
    check(cfg)
    return cfg


def _one_of(value: str, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise VqclipError(f"{key}: unknown value '{value}'; use one of {', '.join(allowed)}")


def check(cfg: GenerateConfig) -> None:
    """Reject impossible values up front, with the key and the fix."""
    if cfg.steps < 0:
        raise VqclipError(f"steps: must be >= 0, got {cfg.steps}")
    if len(cfg.size) != 2 or not all(0 < s <= MAX_SIDE for s in cfg.size):
        raise VqclipError(f"size: expected two sides (width height) in 1..{MAX_SIDE}, got {list(cfg.size)}")
    if cfg.cutouts.n < 1:
        raise VqclipError(f"cutouts.n: must be >= 1, got {cfg.cutouts.n}")
    if cfg.cutouts.pow <= 0 or not 0 <= cfg.cutouts.min_size <= 1:
        raise VqclipError("cutouts: pow must be > 0 and min_size in [0, 1]")
    for name in cfg.cutouts.augments:
        _one_of(name, AUGMENTS, "cutouts.augments")
    _one_of(cfg.optimizer.name.lower(), OPTIMIZERS, "optimizer.name")
    _one_of(cfg.optimizer.schedule, SCHEDULES, "optimizer.schedule")
    if cfg.optimizer.lr <= 0:
        raise VqclipError(f"optimizer.lr: must be > 0, got {cfg.optimizer.lr}")
    _one_of(cfg.init.kind, INITS, "init.kind")
    if cfg.init.kind == "image" and not cfg.init.image:
        raise VqclipError("init.kind is 'image' but init.image is not set; pass --init-image PATH")
    if cfg.init.color is not None and (len(cfg.init.color) != 3 or not all(0 <= c <= 1 for c in cfg.init.color)):
        raise VqclipError(f"init.color: expected three values in [0, 1], got {cfg.init.color}")
    _one_of(cfg.precision, PRECISIONS, "precision")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        raise VqclipError(f"device: unknown device '{cfg.device}'; use auto, cpu, cuda, cuda:N or mps")
    _one_of(cfg.output.video_format, ("mp4", "gif"), "output.video_format")
    if cfg.output.save_every < 0 or cfg.output.fps < 1:
        raise VqclipError("output: save_every must be >= 0 and fps >= 1")
    if not cfg.clip:
        raise VqclipError("clip: at least one CLIP model is needed")
    if not any(c.weight > 0 for c in cfg.clip):
        raise VqclipError("clip: at least one CLIP model needs a positive weight")


def load_yaml(path: str | Path) -> dict:
    """A job YAML file as a plain dict, or a one-line error naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise VqclipError(f"{path}: no such job file")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as exc:  # yaml.YAMLError and OmegaConf errors; message has the line
        first = " ".join(str(exc).split())[:200]
        raise VqclipError(f"{path}: malformed YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VqclipError(f"{path}: expected a mapping of job keys (prompt:, steps:, ...)")
    return data


def to_dict(cfg: GenerateConfig) -> dict[str, Any]:
    """The resolved config as plain data (for job.yaml and the PNG metadata)."""
    return asdict(cfg)


def to_yaml(cfg: GenerateConfig) -> str:
    """The resolved config as YAML text."""
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg)))
