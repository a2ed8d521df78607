"""The value checks of a job: impossible values are refused up front with one line naming the key, the rule and
the fix (`check`), and the files a job reads must exist and be readable before anything heavy runs
(`check_inputs`)."""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..errors import VqclipError, missing, path_problem, shown, shown_path
from ..files.images import open_rgb
from ..files.video import INTERPOLATE_METHODS, MAX_INTERPOLATE, VIDEO_FORMATS
from ..nets.device import PRECISIONS, check_device
from ..nets.memory import MEMORY_MODES
from ..optim.augments import AUGMENTS
from ..optim.inits import INITS, MASK_INITS, canvas_size, wants_edit
from ..optim.optimizers import OPTIMIZERS
from ..optim.prompts import check_has_target, parse_image_prompt, parse_job_prompts
from ..optim.regions import REGIONS, read_mask
from ..optim.steer import check_entries, check_steer_files
from ..optim.schedules import (LR_SCHEDULES, STORY_MODES, PromptSchedule, job_regions, parse_keyframed,
                               story_keyframes)
from ..models.spec import ClipSpec, upscaler_is_path
from ..terms.colors import rgb
from ..terms.registry import SYMMETRY_AXES
from ..modes.registry import MODE_CHOICES, mode_name, rules_of
from ..modes.rules import CAMERA_TRACKS, wants_camera
from .fields import file_keys, values_at
from ..draw.registry import DRAWERS
from .job import ANIMATION_MODES, MAX_SIDE, PADDINGS, RESTYLE_FLOWS, GenerateConfig


def _require(key: str, value, ok: bool, rule: str) -> None:
    """`KEY: must be RULE, got VALUE` unless `ok`: one line naming the key, the rule and the value."""
    if not ok:
        raise VqclipError(f"{key}: must be {rule}, got {shown(value)}")


def _one_of(value: str, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise VqclipError(f"{key}: unknown value {shown(value)}; use one of {', '.join(allowed)}")


def _check_finite(obj: Any, prefix: str = "") -> None:
    """No NaN or infinity in any number of a config section (they ruin the image silently, or crash mid-run)."""
    for f in fields(obj):
        value, key = getattr(obj, f.name), prefix + f.name
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if is_dataclass(item):
                _check_finite(item, f"{key}[{i}]." if isinstance(value, list) else f"{key}.")
            elif isinstance(item, float) and not math.isfinite(item):
                raise VqclipError(f"{key}: must be a finite number, got {item}")


def _check_text(obj: Any, prefix: str = "") -> None:
    """No NUL byte in any text of a config section: no file name, model name or prompt can hold one (it would end in
    Python's `embedded null byte` at the first file opened)."""
    for f in fields(obj):
        value, key = getattr(obj, f.name), prefix + f.name
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            at = f"{key}[{i}]" if isinstance(value, list) else key
            if is_dataclass(item):
                _check_text(item, at + ".")
            elif isinstance(item, str) and "\0" in item:
                raise VqclipError(f"{at}: {shown(item)} contains a NUL byte (\\0), which no file name or text can hold")


def path_options(cfg: GenerateConfig) -> list[tuple[str, str]]:
    """(key, path) of every file or folder a job names (its options marked `path=`): the run folder, images, the
    VQGAN, CLIP, guide and upscaler files, the video to restyle (model names that are not files are passed over by
    `path_problem`)."""
    return [(key, path) for name in file_keys(GenerateConfig) for key, path in values_at(cfg, name) if path]


def check(cfg: GenerateConfig) -> None:
    """Reject impossible values up front, with the key and the fix."""
    _check_finite(cfg)
    _check_text(cfg)
    for key, path in path_options(cfg):
        bad = path_problem(path)
        if bad:
            raise VqclipError(f"{key}: {shown_path(path)} {bad}; check the path")
    _require("seed", cfg.seed, cfg.seed is None or -2**63 <= cfg.seed < 2**63, "a 64-bit integer (-2**63 to 2**63 - 1)")
    _require("threads", cfg.threads, cfg.threads >= 0, ">= 0 (0 = torch's choice)")
    _require("steps", cfg.steps, cfg.steps >= 0, ">= 0")
    if len(cfg.size) != 2 or not all(0 < s <= MAX_SIDE for s in cfg.size):
        raise VqclipError(f"size: expected two sides (width height) in 1..{MAX_SIDE}, got {shown(list(cfg.size))}")
    for key, value, meaning in (("tv_weight", cfg.tv_weight, "0 = no smoothness prior"),
                                ("init.weight", cfg.init.weight, "0 = the latent may leave its start freely"),
                                ("cutouts.noise", cfg.cutouts.noise, "0 = no noise"),
                                ("optimizer.min_factor", cfg.optimizer.min_factor, "the share of lr decayed to")):
        _require(key, value, value >= 0, f">= 0 ({meaning})")
    for key, clips in (("clip", cfg.clip), ("candidates.clip", cfg.candidates.clip)):
        for i, c in enumerate(clips):
            try:
                ClipSpec.parse(c.model, c.pretrained)
            except VqclipError as exc:
                raise VqclipError(f"{key}[{i}]: {str(exc).split(': ', 1)[-1]}") from None
            if c.weight < 0:
                raise VqclipError(f"{key}[{i}].weight: must be >= 0 (to push away from a text, give the prompt a "
                                  f"negative weight: 'text:-1'), got {c.weight}")
    _require("cutouts.n", cfg.cutouts.n, cfg.cutouts.n >= 1, ">= 1")
    _require("cutouts.pow", cfg.cutouts.pow, cfg.cutouts.pow > 0, "> 0 (1 = cutout sizes uniform)")
    _require("cutouts.min_size", cfg.cutouts.min_size, 0 <= cfg.cutouts.min_size <= 1, "in [0, 1]")
    for name in cfg.cutouts.augments:
        _one_of(name, AUGMENTS, "cutouts.augments")
    _one_of(cfg.optimizer.name.lower(), tuple(OPTIMIZERS), "optimizer.name")
    _one_of(cfg.optimizer.schedule, LR_SCHEDULES, "optimizer.schedule")
    _require("optimizer.lr", cfg.optimizer.lr, cfg.optimizer.lr > 0, "> 0")
    _one_of(cfg.init.kind, tuple(INITS), "init.kind")
    if cfg.init.kind == "image" and not cfg.init.image:
        raise VqclipError("init.kind is 'image' but init.image is not set; pass --init-image PATH")
    if cfg.init.image and cfg.init.kind != "image":  # merged layers never hold this (`_init_kind`); built ones may
        raise VqclipError(f"init.kind is {shown(cfg.init.kind)} but init.image is set: give one of them (init.image "
                          "alone starts from the image)")
    if cfg.init.color is not None and (len(cfg.init.color) != 3 or not all(0 <= c <= 1 for c in cfg.init.color)):
        raise VqclipError(f"init.color: expected three values in [0, 1], got {shown(cfg.init.color)}")
    _check_edit(cfg)
    _one_of(cfg.precision, PRECISIONS, "precision")
    _one_of(cfg.memory, MEMORY_MODES, "memory")
    _require("micro_batch", cfg.micro_batch, cfg.micro_batch >= 0, ">= 0 (0 = all cutouts in one pass)")
    check_device(cfg.device)
    _one_of(cfg.output.video_format, VIDEO_FORMATS, "output.video_format")
    _require("output.save_every", cfg.output.save_every, cfg.output.save_every >= 0, ">= 0 (0 = no frames)")
    o = cfg.output
    _require("output.patience", o.patience, o.patience is None or o.patience >= 1,
             ">= 1 (scored frames without improvement) or unset (off)")
    if (o.judge or o.keep_best or o.patience is not None) and o.save_every <= 0:
        raise VqclipError("output.save_every: the judge scores saved frames, and 0 saves none; set save_every > 0 or "
                          "turn off output.judge, keep_best and patience")
    _require("output.fps", cfg.output.fps, cfg.output.fps >= 1, ">= 1")
    if not cfg.clip:
        raise VqclipError("clip: at least one CLIP model is needed")
    if not any(c.weight > 0 for c in cfg.clip):
        raise VqclipError("clip: at least one CLIP model needs a positive weight")
    c = cfg.candidates
    if c.n < 1 or c.steps <= 0 or c.views < 1:
        raise VqclipError(f"candidates: n, steps and views must be >= 1 (steps may also be a share of the run's steps, "
                          f"in (0, 1)), got n={shown(c.n)}, steps={shown(c.steps)}, views={shown(c.views)}")
    _require("candidates.steps", c.steps, c.steps < 1 or float(c.steps).is_integer(),
             "a whole number of steps, or a share of the run's steps below 1 (0.25: a quarter)")
    _require("n", cfg.n, cfg.n >= 1, ">= 1 (the images of the batch)")
    _require("candidates.keep", c.keep, 1 <= c.keep <= c.n, f"in 1..candidates.n ({shown(c.n)}, the starts tried)")
    _require("candidates.rank", c.rank, 0 <= c.rank < c.n, f"in 0..candidates.n - 1 ({shown(c.n - 1)})")
    if c.keep > 1 and cfg.n not in (1, c.keep):
        raise VqclipError(f"candidates.keep ({shown(c.keep)}) makes that many images from one batch of starts; n is "
                          f"{shown(cfg.n)}: set n to the same number, or leave it at 1")
    if c.clip and not any(j.weight > 0 for j in c.clip):
        raise VqclipError("candidates.clip: at least one scoring model needs a positive weight")
    g = cfg.guide
    if bool(g.model) != bool(g.weights):
        raise VqclipError("guide: give both model (the architecture JSON) and weights, or neither (no guidance)")
    _require("guide.weight", g.weight, g.weight >= 0, ">= 0 (0 = no guidance)")
    _require("guide.views", g.views, g.views >= 1, ">= 1")
    _check_looks(cfg)
    _check_animation(cfg)
    _check_flow(cfg)
    _check_drawer(cfg)
    parse_job_prompts(cfg.prompt, cfg.negative, cfg.image_prompts)  # as the run will: a bad prompt fails before it
    if cfg.tile and job_regions(cfg):
        raise VqclipError("tile: a seamless tile has no left or right (the cutouts see it rolled); drop --tile or "
                          "the prompts' '@region'")


def _check_edit(cfg: GenerateConfig) -> None:
    """An edit (init.mask, init.extend) needs the image it edits, a feather and an extension of whole pixels, and a
    canvas within the largest side."""
    i = cfg.init
    if wants_edit(i) and not i.image:
        key = "init.mask" if i.mask else "init.extend"
        raise VqclipError(f"{key}: edits init.image, which is not set; give the image to edit (--init-image PATH)")
    _require("init.mask_feather", i.mask_feather, 0 <= i.mask_feather <= MAX_SIDE,
             f"in 0..{MAX_SIDE} pixels (0 = a hard edge)")
    _one_of(i.mask_init, MASK_INITS, "init.mask_init")
    if len(i.extend) != 4 or any(not isinstance(e, int) or e < 0 for e in i.extend):
        raise VqclipError(f"init.extend: expected four pixel counts >= 0 (left top right bottom), got "
                          f"{shown(list(i.extend))}")
    w, h = canvas_size(cfg.size, i.extend)
    if max(w, h) > MAX_SIDE:
        raise VqclipError(f"init.extend: the canvas would be {w}x{h}, past the largest side {MAX_SIDE}; extend less, "
                          "or lower size")


def _check_looks(cfg: GenerateConfig) -> None:
    """Reject impossible palette and symmetry settings, with the key and the fix."""
    p = cfg.palette
    for name in p.colors:
        rgb(name)  # a name that is no colour: one line naming it
    _require("palette.size", p.size, p.size >= 1, ">= 1 (the colours taken from palette.image)")
    _require("palette.weight", p.weight, p.weight >= 0, ">= 0 (0 = no pull towards the palette)")
    if p.hard and not (p.colors or p.image):
        raise VqclipError("palette.hard: there is no palette to snap to; give palette.colors (--palette red,blue) "
                          "or palette.image")
    for axis in cfg.symmetry.axes:
        _one_of(axis, SYMMETRY_AXES, "symmetry.axes")
    _require("symmetry.weight", cfg.symmetry.weight, cfg.symmetry.weight >= 0, ">= 0 (0 = no symmetry)")


def _check_drawer(cfg: GenerateConfig) -> None:
    """The image model is one of the registry's, with options it can draw with."""
    d = cfg.drawer
    _one_of(d.name, tuple(DRAWERS), "drawer.name")
    _require("drawer.pixel_size", d.pixel_size, 1 <= d.pixel_size <= MAX_SIDE,
             f"in 1..{MAX_SIDE} (image pixels per grid cell)")
    _require("drawer.decay", d.decay, 0 <= d.decay <= 4, "in [0, 4] (0: every frequency alike; 1: 1/f)")
    _require("drawer.cutoff", d.cutoff, 0 < d.cutoff <= 1, "in (0, 1] cycles per pixel (1: every frequency moves)")


def _check_animation(cfg: GenerateConfig) -> None:
    """Reject impossible story, zoom, restyle and resume settings, with the key and the fix."""
    _one_of(cfg.story_mode, STORY_MODES, "story_mode")
    _require("change_every", cfg.change_every, cfg.change_every >= 0, ">= 0 (0 = story parts spread over the steps)")
    _require("story_fade", cfg.story_fade, 0 <= cfg.story_fade <= 1, "in [0, 1] (0 = no fade at a story's keyframes)")
    _require("state_every", cfg.state_every, cfg.state_every >= 0, ">= 0 (0 = state.pt only at the end)")
    keyframes = story_keyframes(cfg.prompt, cfg.story, cfg.steps, cfg.change_every)
    if keyframes:
        schedule = PromptSchedule(keyframes, cfg.story_mode)  # raises on repeated steps or bad prompts
        beside = parse_job_prompts("" if "^" in cfg.prompt else cfg.prompt, cfg.negative, cfg.image_prompts)
        if not any(p.weight > 0 for p in beside):  # a prompt or image prompt that pulls throughout covers every step
            schedule.check_targets()
    check_entries(cfg.steer, cfg.steps, cfg)  # (best of n's trials: checked as the run starts, `Steered`)
    b = cfg.branch
    if (b.parent or b.step) and not 0 <= b.step < cfg.steps:
        raise VqclipError(f"branch.step: {shown(b.step)} is outside the run's steps 0..{cfg.steps - 1}; a branch "
                          "starts at a step of its parent's run")
    a = cfg.animation
    _one_of(a.mode, ANIMATION_MODES, "animation.mode")
    _one_of(a.padding, PADDINGS, "animation.padding")
    _require("animation.every", a.every, a.every >= 1, ">= 1")
    for name in ("zoom", "rotate", "shift_x", "shift_y"):
        pairs = parse_keyframed(getattr(a, name), f"animation.{name}")
        if name == "zoom" and any(v <= 0 for _, v in pairs):
            raise VqclipError("animation.zoom: the scale must be > 0 (1 = no zoom, 1.05 = 5% closer per frame)")
    _check_camera(cfg)
    _one_of(cfg.mode, MODE_CHOICES, "mode")
    rules_of(cfg).check(cfg)  # what the job's mode needs and refuses (vqclip.modes.rules)
    o = cfg.output
    _require("output.video_length", o.video_length, o.video_length is None or o.video_length > 0, "> 0 seconds")
    _require("output.gif_max_side", o.gif_max_side, o.gif_max_side is None or o.gif_max_side >= 8, ">= 8 pixels")
    _require("output.interpolate", o.interpolate, 0 <= o.interpolate <= MAX_INTERPOLATE,
             f"in 0..{MAX_INTERPOLATE} (in-between frames per gap; 0 = none)")
    _one_of(o.interpolate_method, INTERPOLATE_METHODS, "output.interpolate_method")
    if o.interpolate and o.interpolate_method == "ffmpeg" and min(cfg.size) < 32:
        raise VqclipError(f"output.interpolate_method: ffmpeg's minterpolate needs frames of at least 32 px a side, "
                          f"size is {cfg.size[0]}x{cfg.size[1]}; use flow or blend, or a larger size")
    u = o.upscale
    _require("output.upscale.scale", u.scale, u.scale is None or u.scale >= 1, ">= 1 (null = the model's own scale)")
    _require("output.upscale.tile", u.tile, u.tile == 0 or u.tile >= 32, ">= 32 pixels (0 = the whole image at once)")


def _check_camera(cfg: GenerateConfig) -> None:
    """Reject 3D camera values outside a zoom video, and an impossible camera or depth input, with the key and the
    fix."""
    a = cfg.animation
    if wants_camera(a) and mode_name(cfg) != "zoom":
        key = next(k for k in CAMERA_TRACKS if any(v != 0 for _, v in parse_keyframed(getattr(a, k), k)))
        raise VqclipError(f"animation.{key}: the 3D camera moves a zoom video, but this job is {rules_of(cfg).title}; "
                          f"set animation.mode: zoom, or unset animation.{key}")
    _require("animation.fov", a.fov, 0 < a.fov < 180, "in (0, 180) degrees (40 = Disco's)")
    _require("animation.near", a.near, a.near > 0, "> 0")
    if not a.near < a.far:
        raise VqclipError(f"animation.near: must be below animation.far ({shown(a.far)}), got {shown(a.near)}; the "
                          "nearest depth comes before the farthest")
    _require("animation.depth_size", a.depth_size, a.depth_size > 0 and a.depth_size % 14 == 0,
             "a positive multiple of 14 (the depth model's patch side; 518 = its training size)")


def _check_flow(cfg: GenerateConfig) -> None:
    """A flow-stabilised restyle: a known flow method, a start share in [0, 1], a term weight >= 0, neither share
    without a method, and none of it outside a restyle."""
    r = cfg.restyle
    _one_of(r.flow, RESTYLE_FLOWS, "restyle.flow")
    _require("restyle.flow_init", r.flow_init, 0 <= r.flow_init <= 1, "in [0, 1] (0 = the start ignores the flow)")
    _require("restyle.flow_weight", r.flow_weight, r.flow_weight >= 0, ">= 0 (0 = no flow consistency term)")
    used = [key for key, on in (("restyle.flow", r.flow != "none"), ("restyle.flow_init", r.flow_init > 0),
                                ("restyle.flow_weight", r.flow_weight > 0)) if on]
    if used and mode_name(cfg) != "restyle":
        raise VqclipError(f"{used[0]}: stabilises a restyle by the input video's motion, but this job makes "
                          f"{rules_of(cfg).title}; unset {', '.join(used)}, or restyle a video (restyle.input)")
    if r.flow == "none" and used:
        raise VqclipError(f"{used[0]}: follows the input's optical flow, but restyle.flow is none; set restyle.flow "
                          "(dis, farneback or raft-small), or set it to 0")


def check_inputs(cfg: GenerateConfig) -> None:
    """The job can run: it has something to aim at, and the files it reads (init image, image prompts, restyle video)
    exist, the images readable. Checked before any model loads or run folder is made; separate from `check`, so an
    example job stays valid where its files are not."""
    for section, name, files in (("vqgan", "VQGAN", (("config", cfg.vqgan.config), ("checkpoint", cfg.vqgan.checkpoint))),
                                 ("guide", "guide", (("model", cfg.guide.model), ("weights", cfg.guide.weights)))):
        absent = [f"{section}.{key}: {missing(path, 'file')}" for key, path in files if path and not Path(path).is_file()]
        if absent:  # both named at once, before any download is tried for the CLIP
            raise VqclipError("; ".join(absent) + f"; check the {name} paths")
    upscaler = cfg.output.upscale.model
    if upscaler and upscaler_is_path(upscaler) and not Path(upscaler).expanduser().is_file():
        raise VqclipError(f"output.upscale.model: {missing(upscaler, 'upscaler weights file')}; check the path, or "
                          "name a preset (see `vqclip upscale --help`)")
    o = cfg.output
    if o.video and o.interpolate and o.interpolate_method == "flow" and find_spec("cv2") is None:  # not at the end
        raise VqclipError("output.interpolate_method: flow needs OpenCV (`pip install 'vqclip[flow]'`); install it, or "
                          "use blend or ffmpeg (--interpolate-method)")
    wanted = [("init.image", cfg.init.image, "image")] if cfg.init.kind == "image" else []
    wanted += [("image_prompts", parse_image_prompt(item).text, "image") for item in cfg.image_prompts]
    wanted += rules_of(cfg).inputs(cfg)  # the mode's own files (a restyle's video)
    wanted += [("palette.image", cfg.palette.image, "image")] if cfg.palette.image else []
    wanted += [("init.mask", cfg.init.mask, "image")] if cfg.init.mask else []
    for key, path, kind in wanted:
        head, _, weight = str(path).rpartition(":")
        if key == "image_prompts" and not Path(path).is_file() and head and Path(head).is_file():
            raise VqclipError(f"image_prompts: '{path}': the weight '{weight}' after the image is not a number; "
                              f"write PATH:WEIGHT, e.g. {head}:0.5")
        if not Path(path).is_file():
            raise VqclipError(f"{key}: {missing(path, kind + ' file')}; check the path")
        if kind == "image":
            open_rgb(path)  # a corrupt image fails here, not after its run folder is made
        if key == "init.mask" and open_rgb(path).convert("L").getextrema()[1] == 0:
            raise VqclipError(f"init.mask: {shown_path(path)} is all black, so nothing may change; paint white where "
                              "the image may change")
    check_steer_files(cfg.steer)  # the images and masks of its steer: entries, as a live steer's are checked
    for region in job_regions(cfg):
        if region not in REGIONS:
            read_mask(region)  # a missing, corrupt or all-black mask fails here, in one line
    if not story_keyframes(cfg.prompt, cfg.story, cfg.steps, cfg.change_every):  # a story's keyframes are its targets
        check_has_target(parse_job_prompts(cfg.prompt, cfg.negative, cfg.image_prompts))
