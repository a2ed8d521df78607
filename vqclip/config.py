"""The one typed job config, filled from defaults, a preset, YAML files and CLI overrides, in that order."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from .errors import VqclipError, missing, reason

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "radam", "nadam", "adamax", "adagrad")
SCHEDULES = ("constant", "cosine", "linear")
INITS = ("random", "pixels", "gradient", "flat", "background", "image")
AUGMENTS = ("affine", "perspective", "flip", "jitter", "sharpness", "erasing", "noise")
PRECISIONS = ("auto", "fp32", "bf16")
MEMORY_MODES = ("auto", "normal", "low")
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
    kind: str = "random"  # random codes, pixels noise, gradient, flat colour, background (flat, in the colour the
    #                       prompt names after "on": "... on a red background"), or image
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
    video_length: Optional[float] = None  # seconds; when set, fps = frames / video_length (animation, issue 7)
    gif_max_side: Optional[int] = None  # shrink GIF frames so no side exceeds this (animation, issue 7)


@dataclass
class CandidatesConfig:
    n: int = 1  # starts tried (1: off), run together for `steps` steps; the best-scored one goes on (candidates.py)
    steps: int = 30
    views: int = 32  # augmented views each start is scored on (the same views for every start)
    clip: list[ClipConfig] = field(default_factory=list)  # models that score the starts (empty: the job's CLIP)


@dataclass
class GuideConfig:
    model: Optional[str] = None  # a guide classifier's architecture JSON (vqclip/guide.py); null = no guidance
    weights: Optional[str] = None  # its weights (.safetensors, or a torch file read without running code)
    weight: float = 0.1  # share of its cross-entropy (for the label the prompt names) in the loss
    views: int = 4  # augmented views of the image it scores per step


@dataclass
class GenerateConfig:
    prompt: str = ""  # "text:weight|text:weight"; a negative weight pushes away
    negative: list[str] = field(default_factory=list)  # texts to push away (weight -1 each unless text:weight)
    image_prompts: list[str] = field(default_factory=list)  # "path[:weight]"
    model: Optional[str] = None  # a preset name (see `vqclip models`); sets VQGAN, CLIP and defaults
    steps: int = 300
    size: list[int] = field(default_factory=lambda: [256, 256])  # width, height
    seed: Optional[int] = None  # null or -1: drawn at random and recorded
    device: str = "auto"  # auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps
    precision: str = "auto"  # auto (bf16 on CUDA and on CPUs with native bf16 from 128x128, else fp32), fp32, bf16
    memory: str = "auto"  # auto (checkpointing + micro-batches only when memory is short, with a notice), normal, low
    micro_batch: int = 0  # cutouts per CLIP pass (0: all at once, unless memory auto/low picks a number)
    compile: bool = False  # torch.compile the decoder and CLIP (slow first step; falls back to eager on failure)
    threads: int = 0  # CPU threads for torch (0: torch's choice); 1 is fastest on a busy machine
    tv_weight: float = 0.0  # total-variation prior on the image (smoothness)
    vqgan: VQGANConfig = field(default_factory=VQGANConfig)
    clip: list[ClipConfig] = field(default_factory=lambda: [ClipConfig()])
    cutouts: CutoutsConfig = field(default_factory=CutoutsConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    init: InitConfig = field(default_factory=InitConfig)
    candidates: CandidatesConfig = field(default_factory=CandidatesConfig)
    guide: GuideConfig = field(default_factory=GuideConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    # animation (issue 7; classes at the end of this file): story prompts, zoom video, restyle, resume
    story: list[StoryKeyframe] = field(default_factory=list)  # [{at: step, prompt: ..., weight: 1}]
    story_mode: str = "switch"  # switch: one keyframe at a time; blend: linear between neighbours
    change_every: int = 0  # for 'a ^ b' prompts: steps per part (0: spread evenly over steps)
    animation: AnimationConfig = field(default_factory=lambda: AnimationConfig())
    restyle: RestyleConfig = field(default_factory=lambda: RestyleConfig())
    state_every: int = 50  # save state.pt (for `vqclip resume`) every K steps; 0 = only at the end


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
    cand = raw.get("candidates")
    if isinstance(cand, dict) and cand.get("clip") is not None:
        clips = cand["clip"] if isinstance(cand["clip"], list) else [cand["clip"]]
        raw["candidates"] = {**cand, "clip": [{"model": c} if isinstance(c, str) else c for c in clips]}
    return raw


def _literal(value: Any) -> Any:
    """Strings escaped for OmegaConf so they stay as written: `${...}` in a prompt is text, never interpolated."""
    if isinstance(value, str):
        return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def _check_sections(raw: dict, cls: type, source: str, prefix: str = "") -> None:
    """Sections must be mappings and lists lists, checked before OmegaConf (whose messages here are cryptic)."""
    for f in fields(cls):
        value = raw.get(f.name)
        if value is None:
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        key = prefix + f.name
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise VqclipError(f"{source}: {key}: expected a section (a mapping of keys), got {value!r}")
            _check_sections(value, type(default), source, key + ".")
        elif isinstance(default, list) and not isinstance(value, list):
            what = "{model: ..., pretrained: ...} or a list of them" if key == "clip" else "a list"
            raise VqclipError(f"{source}: {key}: expected {what}, got {value!r}")
    clips = raw.get("clip") if prefix in ("", "candidates.") else None  # the two lists of CLIP models
    for i, item in enumerate(clips if isinstance(clips, list) else []):
        if not isinstance(item, dict):
            raise VqclipError(f"{source}: {prefix}clip[{i}]: expected a mapping like "
                              "{model: ViT-B-32, pretrained: openai}")


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
    message = reason(exc)  # the first line, or the type's name when OmegaConf says nothing
    if isinstance(exc, ConfigKeyError) or re.search(r"\bnot in\b", message):
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
        raw = _literal(_normalise(raw, source))
        _check_sections(raw, GenerateConfig, source)
        try:
            merged = OmegaConf.merge(merged, raw)
        except OmegaConfBaseException as exc:
            raise _explain(exc, source) from None
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise _explain(exc, "config") from None
    check(cfg)
    return cfg


def _require(key: str, value, ok: bool, rule: str) -> None:
    """`KEY: must be RULE, got VALUE` unless `ok`: one line naming the key, the rule and the value."""
    if not ok:
        raise VqclipError(f"{key}: must be {rule}, got {value}")


def check_device(name: str) -> None:
    """A device name vqclip knows (auto, cpu, mps, cuda, cuda:N), else one line saying which ones it knows."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(name)):
        raise VqclipError(f"device: unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps")


def _one_of(value: str, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise VqclipError(f"{key}: unknown value '{value}'; use one of {', '.join(allowed)}")


def _check_finite(obj: Any, prefix: str = "") -> None:
    """No NaN or infinity in any number of a config section (they ruin the image silently, or crash mid-run)."""
    for f in fields(obj):
        value, key = getattr(obj, f.name), prefix + f.name
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if is_dataclass(item):
                _check_finite(item, f"{key}[{i}]." if isinstance(value, list) else f"{key}.")
            elif isinstance(item, float) and not math.isfinite(item):
                raise VqclipError(f"{key}: must be a finite number, got {item}")


def check(cfg: GenerateConfig) -> None:
    """Reject impossible values up front, with the key and the fix."""
    _check_finite(cfg)
    _require("seed", cfg.seed, cfg.seed is None or -2**63 <= cfg.seed < 2**63, "a 64-bit integer (-2**63 to 2**63 - 1)")
    _require("threads", cfg.threads, cfg.threads >= 0, ">= 0 (0 = torch's choice)")
    _require("steps", cfg.steps, cfg.steps >= 0, ">= 0")
    if len(cfg.size) != 2 or not all(0 < s <= MAX_SIDE for s in cfg.size):
        raise VqclipError(f"size: expected two sides (width height) in 1..{MAX_SIDE}, got {list(cfg.size)}")
    for key, value, meaning in (("tv_weight", cfg.tv_weight, "0 = no smoothness prior"),
                                ("init.weight", cfg.init.weight, "0 = the latent may leave its start freely"),
                                ("cutouts.noise", cfg.cutouts.noise, "0 = no noise"),
                                ("optimizer.min_factor", cfg.optimizer.min_factor, "the share of lr decayed to")):
        _require(key, value, value >= 0, f">= 0 ({meaning})")
    for key, clips in (("clip", cfg.clip), ("candidates.clip", cfg.candidates.clip)):
        for i, c in enumerate(clips):
            if c.weight < 0:
                raise VqclipError(f"{key}[{i}].weight: must be >= 0 (to push away from a text, give the prompt a "
                                  f"negative weight: 'text:-1'), got {c.weight}")
    _require("cutouts.n", cfg.cutouts.n, cfg.cutouts.n >= 1, ">= 1")
    _require("cutouts.pow", cfg.cutouts.pow, cfg.cutouts.pow > 0, "> 0 (1 = cutout sizes uniform)")
    _require("cutouts.min_size", cfg.cutouts.min_size, 0 <= cfg.cutouts.min_size <= 1, "in [0, 1]")
    for name in cfg.cutouts.augments:
        _one_of(name, AUGMENTS, "cutouts.augments")
    _one_of(cfg.optimizer.name.lower(), OPTIMIZERS, "optimizer.name")
    _one_of(cfg.optimizer.schedule, SCHEDULES, "optimizer.schedule")
    _require("optimizer.lr", cfg.optimizer.lr, cfg.optimizer.lr > 0, "> 0")
    _one_of(cfg.init.kind, INITS, "init.kind")
    if cfg.init.kind == "image" and not cfg.init.image:
        raise VqclipError("init.kind is 'image' but init.image is not set; pass --init-image PATH")
    if cfg.init.color is not None and (len(cfg.init.color) != 3 or not all(0 <= c <= 1 for c in cfg.init.color)):
        raise VqclipError(f"init.color: expected three values in [0, 1], got {cfg.init.color}")
    _one_of(cfg.precision, PRECISIONS, "precision")
    _one_of(cfg.memory, MEMORY_MODES, "memory")
    _require("micro_batch", cfg.micro_batch, cfg.micro_batch >= 0, ">= 0 (0 = all cutouts in one pass)")
    check_device(cfg.device)
    _one_of(cfg.output.video_format, ("mp4", "gif"), "output.video_format")
    _require("output.save_every", cfg.output.save_every, cfg.output.save_every >= 0, ">= 0 (0 = no frames)")
    _require("output.fps", cfg.output.fps, cfg.output.fps >= 1, ">= 1")
    if not cfg.clip:
        raise VqclipError("clip: at least one CLIP model is needed")
    if not any(c.weight > 0 for c in cfg.clip):
        raise VqclipError("clip: at least one CLIP model needs a positive weight")
    c = cfg.candidates
    if c.n < 1 or c.steps < 1 or c.views < 1:
        raise VqclipError(f"candidates: n, steps and views must be >= 1, got n={c.n}, steps={c.steps}, views={c.views}")
    if c.clip and not any(j.weight > 0 for j in c.clip):
        raise VqclipError("candidates.clip: at least one scoring model needs a positive weight")
    if c.n > 1 and (cfg.animation.mode != "none" or cfg.restyle.input):
        raise VqclipError("candidates.n > 1 picks the best start of a still image; it cannot be combined with "
                          "animation.mode: zoom or restyle.input (set candidates.n: 1)")
    g = cfg.guide
    if bool(g.model) != bool(g.weights):
        raise VqclipError("guide: give both model (the architecture JSON) and weights, or neither (no guidance)")
    _require("guide.weight", g.weight, g.weight >= 0, ">= 0 (0 = no guidance)")
    _require("guide.views", g.views, g.views >= 1, ">= 1")
    _check_animation(cfg)
    from .prompts import parse_job_prompts  # imported here so that config itself stays torch-free

    parse_job_prompts(cfg.prompt, cfg.negative, cfg.image_prompts)  # as the run will: a bad prompt fails before it


def check_inputs(cfg: GenerateConfig) -> None:
    """The job can run: it has something to aim at, and the files it reads (init image, image prompts, restyle video)
    exist, the images readable. Checked before any model loads or run folder is made; separate from `check`, so an
    example job stays valid where its files are not."""
    from .init import load_image
    from .prompts import check_has_target, parse_image_prompt, parse_job_prompts
    from .schedules import story_keyframes

    for section, name, files in (("vqgan", "VQGAN", (("config", cfg.vqgan.config), ("checkpoint", cfg.vqgan.checkpoint))),
                                 ("guide", "guide", (("model", cfg.guide.model), ("weights", cfg.guide.weights)))):
        absent = [f"{section}.{key}: {missing(path, 'file')}" for key, path in files if path and not Path(path).is_file()]
        if absent:  # both named at once, before any download is tried for the CLIP
            raise VqclipError("; ".join(absent) + f"; check the {name} paths")
    wanted = [("init.image", cfg.init.image, "image")] if cfg.init.kind == "image" else []
    wanted += [("image_prompts", parse_image_prompt(item).text, "image") for item in cfg.image_prompts]
    wanted += [("restyle.input", cfg.restyle.input, "video")] if cfg.restyle.input else []
    for key, path, kind in wanted:
        head, _, weight = str(path).rpartition(":")
        if key == "image_prompts" and not Path(path).is_file() and head and Path(head).is_file():
            raise VqclipError(f"image_prompts: '{path}': the weight '{weight}' after the image is not a number; "
                              f"write PATH:WEIGHT, e.g. {head}:0.5")
        if not Path(path).is_file():
            raise VqclipError(f"{key}: {missing(path, kind + ' file')}; check the path")
        if kind == "image":
            load_image(path)  # a corrupt image fails here, not after its run folder is made
    if not story_keyframes(cfg.prompt, cfg.story, cfg.steps, cfg.change_every):  # a story's keyframes are its targets
        check_has_target(parse_job_prompts(cfg.prompt, cfg.negative, cfg.image_prompts))


def to_dict(cfg: GenerateConfig) -> dict[str, Any]:
    """The resolved config as plain data (for job.yaml and the PNG metadata)."""
    return asdict(cfg)


def to_yaml(cfg: GenerateConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


# ---- animation (issue 7): story keyframes, zoom videos, restyling a video, resume ----

@dataclass
class StoryKeyframe:
    at: int = 0  # step (in restyle jobs: input frame) from which this prompt is the target
    prompt: str = ""  # "text:weight|text:weight"
    weight: float = 1.0  # scales every weight of this keyframe's prompt


@dataclass
class AnimationConfig:
    mode: str = "none"  # none, or zoom: transform the image every `every` steps (one video frame each)
    every: int = 10  # steps per transform = per video frame (replaces output.save_every in zoom mode)
    zoom: Any = 1.0  # scale per frame (>1 zooms in); a number, {step: value} or "0:1.0, 100:1.05"
    rotate: Any = 0.0  # degrees per frame, counter-clockwise; constant or key-framed as zoom
    shift_x: Any = 0.0  # pixels per frame, content moves right; constant or key-framed
    shift_y: Any = 0.0  # pixels per frame, content moves down; constant or key-framed
    padding: str = "reflection"  # what fills the uncovered border: reflection, border or zeros
    reset_optimizer: bool = True  # restart the optimizer after each transform (no stale momentum)


@dataclass
class RestyleConfig:
    input: Optional[str] = None  # the video to restyle; set = this job is a restyle job
    steps_per_frame: int = 30
    blend: float = 0.5  # share of the previous output in each frame's start image (temporal smoothness)
    keep_aspect: bool = True  # output keeps the video's aspect, long side = max(size); false: exactly size
    max_frames: int = 0  # restyle only the first N frames (0: all)
    fps: Optional[float] = None  # output fps (default: the input's)
    audio: bool = True  # carry the input's audio track over


def _check_animation(cfg: GenerateConfig) -> None:
    """Reject impossible story, zoom, restyle and resume settings, with the key and the fix."""
    from .schedules import STORY_MODES, PromptSchedule, parse_keyframed, story_keyframes

    _one_of(cfg.story_mode, STORY_MODES, "story_mode")
    _require("change_every", cfg.change_every, cfg.change_every >= 0, ">= 0 (0 = story parts spread over the steps)")
    _require("state_every", cfg.state_every, cfg.state_every >= 0, ">= 0 (0 = state.pt only at the end)")
    keyframes = story_keyframes(cfg.prompt, cfg.story, cfg.steps, cfg.change_every)
    if keyframes:
        schedule = PromptSchedule(keyframes, cfg.story_mode)  # raises on repeated steps or bad prompts
        from .prompts import parse_job_prompts

        beside = parse_job_prompts("" if "^" in cfg.prompt else cfg.prompt, cfg.negative, cfg.image_prompts)
        if not any(p.weight > 0 for p in beside):  # a prompt or image prompt that pulls throughout covers every step
            schedule.check_targets()
    a = cfg.animation
    _one_of(a.mode, ("none", "zoom"), "animation.mode")
    _one_of(a.padding, ("reflection", "border", "zeros"), "animation.padding")
    _require("animation.every", a.every, a.every >= 1, ">= 1")
    for name in ("zoom", "rotate", "shift_x", "shift_y"):
        pairs = parse_keyframed(getattr(a, name), f"animation.{name}")
        if name == "zoom" and any(v <= 0 for _, v in pairs):
            raise VqclipError("animation.zoom: the scale must be > 0 (1 = no zoom, 1.05 = 5% closer per frame)")
    r = cfg.restyle
    if r.input is not None:
        if a.mode != "none":
            raise VqclipError("restyle.input and animation.mode: zoom cannot be combined; pick one")
        _require("restyle.steps_per_frame", r.steps_per_frame, r.steps_per_frame >= 1, ">= 1")
        _require("restyle.blend", r.blend, 0 <= r.blend < 1, "in [0, 1) (0 = independent frames)")
        _require("restyle.max_frames", r.max_frames, r.max_frames >= 0, ">= 0 (0 = all frames)")
        _require("restyle.fps", r.fps, r.fps is None or r.fps > 0, "> 0 (unset = the input's rate)")
    o = cfg.output
    _require("output.video_length", o.video_length, o.video_length is None or o.video_length > 0, "> 0 seconds")
    _require("output.gif_max_side", o.gif_max_side, o.gif_max_side is None or o.gif_max_side >= 8, ">= 8 pixels")
