"""Config layers: (source, mapping) layers merged strictly over the job's defaults into one `GenerateConfig`; unknown
keys (with a "did you mean"), wrong types and impossible values are one-line errors naming the source and the key.
Values are taken as written: `${...}` in a prompt is text (no OmegaConf interpolation)."""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import asdict, fields
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from ..errors import SHOWN, VqclipError, cut, reason, shown
from ..models.spec import ClipSpec, canonical_model
from ..optim.prompts import prompt_item, prompt_items
from .checks import check
from .fields import keys, section_of
from .job import GenerateConfig


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
    _prompt_strings(raw, source)
    cand = raw.get("candidates")
    if isinstance(cand, dict) and cand.get("clip") is not None:
        clips = cand["clip"] if isinstance(cand["clip"], list) else [cand["clip"]]
        raw["candidates"] = {**cand, "clip": [{"model": c} if isinstance(c, str) else c for c in clips]}
        raw["candidates"]["clip"] = [_clip_entry(c) for c in raw["candidates"]["clip"]]
    if isinstance(raw.get("clip"), list):
        raw["clip"] = [_clip_entry(c) for c in raw["clip"]]
    return raw


def _prompt_strings(raw: dict, source: str) -> None:
    """Prompts written as lists of `{text, weight, stop}` mappings (`prompt:`, a story keyframe's `prompt:`, a
    `negative:` entry) as their canonical strings, so job.yaml and the PNG keep the one syntax."""
    try:
        if isinstance(raw.get("prompt"), (list, dict)):
            raw["prompt"] = prompt_items(raw["prompt"], "prompt")
        if isinstance(raw.get("negative"), list):
            raw["negative"] = [prompt_item(n, f"negative[{i}]") if isinstance(n, dict) else n
                               for i, n in enumerate(raw["negative"])]
        if isinstance(raw.get("story"), list):
            raw["story"] = [{**k, "prompt": prompt_items(k["prompt"], f"story[{i}].prompt")}
                            if isinstance(k, dict) and isinstance(k.get("prompt"), (list, dict)) else k
                            for i, k in enumerate(raw["story"])]
    except VqclipError as exc:
        raise VqclipError(f"{source}: {exc}") from None


def _clip_entry(clip: Any) -> Any:
    """One CLIP entry as vqclip reads it: an OpenAI name (ViT-B/32) as open_clip's (ViT-B-32), with a notice, and no
    default tag for a CLIP that brings its own weights."""
    if isinstance(clip, dict) and isinstance(clip.get("model"), str):
        clip = {**clip, "model": canonical_model(clip["model"])}
    return _no_tag_for_own_weights(clip)


def _no_tag_for_own_weights(clip: Any) -> Any:
    """A CLIP that brings its own weights (a model folder, local-dir:, hf-hub:) takes no pretrained tag unless one is
    given: the default 'openai' names the weights of an open_clip architecture only."""
    if not isinstance(clip, dict) or "pretrained" in clip or not isinstance(clip.get("model"), str):
        return clip
    try:
        form = ClipSpec.parse(clip["model"]).form
    except VqclipError:
        return clip  # a bad name is reported by the checks, with its key
    return {**clip, "pretrained": None} if form in ("dir", "hub") else clip


def _init_kind(raw: dict, source: str) -> dict:
    """A layer's start as the user means it: `init.image` without `init.kind` sets kind image (as --init-image does);
    a kind other than image beside an image is an error; a kind other than image alone drops the image of a layer
    beneath (a later layer wins, and job.yaml never records an image that was not used)."""
    init = raw.get("init")
    if not isinstance(init, dict) or not isinstance(init.get("kind", "image"), (str, type(None))):
        return raw  # not a section, or a kind of the wrong type: the checks below say so
    image, kind = init.get("image"), init.get("kind")
    if image not in (None, ""):
        if kind in (None, "image"):
            return {**raw, "init": {**init, "kind": "image"}}
        raise VqclipError(f"{source}: init.kind is {shown(kind)} but init.image is set: give one of them (init.image "
                          "alone starts from the image)")
    if kind is not None and kind != "image" and "image" not in init:
        return {**raw, "init": {**init, "image": None}}
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


def _is_list(hint: Any) -> bool:
    """Is a field's type a list, or an Optional list (init.color)?"""
    return typing.get_origin(hint) is list or any(typing.get_origin(a) is list for a in typing.get_args(hint))


def _check_sections(raw: dict, cls: type, source: str, prefix: str = "") -> None:
    """Sections must be mappings and lists lists, checked before OmegaConf (whose messages here are cryptic)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        value = raw.get(f.name)
        if value is None:
            continue
        section = section_of(f)
        key = prefix + f.name
        if section is not None and not f.metadata.get("item"):
            if not isinstance(value, dict):
                raise VqclipError(f"{source}: {key}: expected a section (a mapping of keys), got {shown(value)}")
            _check_sections(value, section, source, key + ".")
        elif _is_list(hints[f.name]) and not isinstance(value, list):
            what = "{model: ..., pretrained: ...} or a list of them" if key == "clip" else "a list"
            raise VqclipError(f"{source}: {key}: expected {what}, got {shown(value)}")
        elif section is not None and isinstance(value, list):  # a list of sections: each item's lists (steer[])
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _check_sections(item, section, source, f"{key}[{i}].")
    clips = raw.get("clip") if prefix in ("", "candidates.") else None  # the two lists of CLIP models
    for i, item in enumerate(clips if isinstance(clips, list) else []):
        if not isinstance(item, dict):
            raise VqclipError(f"{source}: {prefix}clip[{i}]: expected a mapping like "
                              "{model: ViT-B-32, pretrained: openai}")


def _explain(exc: OmegaConfBaseException, source: str) -> VqclipError:
    """OmegaConf's multi-line error as one line naming the key, the problem and the fix."""
    key = getattr(exc, "full_key", None) or "?"
    text = str(exc)
    try:
        value = str(getattr(exc, "value", None))
    except ValueError:  # an integer too long to write out
        value = ""
    if len(value) > SHOWN:  # OmegaConf echoes the whole value: cut it as every message does
        text = text.replace(value, cut(value))
    message = reason(exc if text == str(exc) else ValueError(text))  # the first line, or the type's name if empty
    if isinstance(exc, ConfigKeyError) or re.search(r"\bnot in\b", message):
        bad = re.search(r"Key '([^']+)'", message)
        return unknown_key(key if key != "?" else (bad.group(1) if bad else "?"), source)
    return VqclipError(f"{source}: {key}: {message}")


def unknown_key(name: Any, source: str) -> VqclipError:
    """`SOURCE: unknown key 'NAME'; did you mean 'KEY'?` (the closest job key), or where the keys are listed."""
    close = difflib.get_close_matches(name, keys(GenerateConfig), n=1) if isinstance(name, str) else []
    hint = f"; did you mean '{close[0]}'?" if close else "; see `vqclip generate --help` for the keys"
    return VqclipError(f"{source}: unknown key {shown(name)}{hint}")


def merge_layers(layers: list[tuple[str, dict]]) -> GenerateConfig:
    """Merge (source, mapping) layers over the defaults, strictly: unknown keys and wrong types are errors."""
    merged = OmegaConf.structured(GenerateConfig)
    for source, raw in layers:
        if not isinstance(raw, dict):
            raise VqclipError(f"{source}: expected a mapping of job keys, got {type(raw).__name__}")
        raw = _literal(_init_kind(_normalise(raw, source), source))
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


def to_dict(cfg: GenerateConfig) -> dict[str, Any]:
    """The resolved config as plain data (for job.yaml and the PNG metadata)."""
    return asdict(cfg)


def to_yaml(cfg: GenerateConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
