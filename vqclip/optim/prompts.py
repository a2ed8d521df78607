"""Prompt syntax: "text:weight:stop|text:weight", a region after '@' ("a red square:1@left", see regions.py), negative
prompts, "path:weight:stop" image prompts, and the YAML form `[{text, weight, stop, mask}]` turned into that string
(torch-free: the config checks a job's prompts with it before anything heavy is imported)."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import VqclipError, shown
from .regions import check_region

ITEM_KEYS = ("text", "weight", "stop", "mask")  # the keys of a prompt written as a YAML mapping


@dataclass(frozen=True)
class Prompt:
    """One target: a text or an image path, with its weight (negative = push the image away from it) and its stop: a
    cutout whose signed distance (the weight's sign times the distance) is below the stop no longer pulls (its gradient
    is cut, its loss still counted), as in Crowson's notebook; None = no stop."""

    text: str  # the text, or the image path when `image` is set
    weight: float = 1.0
    image: bool = False
    stop: Optional[float] = None
    region: Optional[str] = None  # where on the canvas it pulls: a region name or a mask image path; None = everywhere


def _number(text: str) -> Optional[float]:
    """`text` as a float, or None when it is no number (then the colon before it belongs to the text)."""
    try:
        return float(text)
    except ValueError:
        return None


def _split_weight(item: str, what: str) -> Prompt:
    """'text:1.5' -> Prompt('text', 1.5), 'text:1:-0.5' -> stop -0.5 as well (the numbers are read from the right, as
    the notebook's `rsplit(':', 2)` does); a colon not followed by a number is part of the text."""
    numbers: list[float] = []
    body = item
    while len(numbers) < 2:
        head, sep, tail = body.rpartition(":")
        if not sep:
            break
        if tail.strip() == "" and head.strip():
            _, colon, before = head.rpartition(":")
            if not numbers and colon and _number(before) is not None:
                raise VqclipError(f"{what} {shown(item)} has an empty stop after ':'; write "
                                  f"{shown(head.strip() + ':-0.5')} or drop the colon")
            fix = ":".join([head.strip(), "1", *map(_num, numbers)])
            raise VqclipError(f"{what} {shown(item)} has an empty weight after ':'; write {shown(fix)} or drop the "
                              "colon")
        value = _number(tail)
        if value is None:
            break
        numbers.insert(0, value)
        body = head
    weight, stop = (numbers + [1.0])[0], numbers[1] if len(numbers) == 2 else None
    if not math.isfinite(weight):
        raise VqclipError(f"{what} {shown(item)}: weight must be a finite number")
    if stop is not None and (math.isnan(stop) or stop == math.inf):
        raise VqclipError(f"{what} {shown(item)}: stop must be a finite number (or -inf: no stop)")
    if not body.strip():
        raise VqclipError(f"{what} {shown(item)} has no text before the weight")
    return Prompt(body.strip(), weight, stop=None if stop == -math.inf else stop)


def _split_region(item: str, what: str) -> Prompt:
    """'a red square:1@left' -> Prompt('a red square', 1, region='left'): the region is the word after the last '@'
    (a name or a mask image path, no spaces); an '@' followed by a space, or by ':', stays in the text."""
    body, at, tail = item.strip().rpartition("@")
    if not at or (tail and (any(c.isspace() for c in tail) or ":" in tail)):
        if at and ":" in tail and tail.partition(":")[0].strip() and not any(c.isspace() for c in tail):
            region = tail.partition(":")[0]
            if check_region(region, None) is not None:
                raise VqclipError(f"{what} {shown(item)}: the region goes last; write "
                                  f"{shown(body.strip() + ':' + tail.partition(':')[2] + '@' + region)}")
        return _split_weight(item, what)
    if not tail:
        raise VqclipError(f"{what} {shown(item)} has nothing after '@'; name a region (e.g. {shown(body + '@left')}) "
                          "or drop the '@'")
    p = _split_weight(body.strip(), what)
    return Prompt(p.text, p.weight, stop=p.stop, region=check_region(tail, f"{what} {shown(item)}"))


def parse_prompts(spec: str) -> list[Prompt]:
    """Parse 'a red circle:1|blurry:-0.5' into prompts; empty parts and non-finite weights are errors."""
    if not spec.strip():
        return []
    parts = spec.split("|")
    if any(not p.strip() for p in parts):
        raise VqclipError(f"prompt {shown(spec)} has an empty part between '|'; write 'a:1|b:0.5'")
    return [_split_region(p.strip(), "prompt") for p in parts]


def parse_negatives(items: list[str]) -> list[Prompt]:
    """`--negative TEXT` entries: weight -1 unless given; a positive weight is made negative; a stop is kept."""
    out = []
    for item in items:
        p = _split_region(item.strip(), "negative prompt")
        out.append(Prompt(p.text, -abs(p.weight), stop=p.stop, region=p.region))
    return out


def parse_image_prompt(item: str) -> Prompt:
    """'path/to/image.png:0.5:-1' -> Prompt(path, 0.5, image=True, stop=-1); the weight and stop are optional."""
    p = _split_weight(item.strip(), "image prompt")
    return Prompt(p.text, p.weight, image=True, stop=p.stop)


def parse_job_prompts(prompt: str, negative: list[str], image_prompts: list[str]) -> list[Prompt]:
    """A job's text, negative and image prompts, parsed: what a run optimises, and what the config check tries early."""
    return parse_prompts(prompt) + parse_negatives(negative) + [parse_image_prompt(p) for p in image_prompts]


def check_has_target(prompts: list[Prompt]) -> None:
    """Generation needs at least one positive target to aim at."""
    if not any(p.weight > 0 for p in prompts):
        raise VqclipError("prompt: nothing to aim at: give a prompt (or --image-prompt) with a positive weight")


# ---- the YAML form: a list of {text, weight, stop} mappings, stored as the canonical string ----

def _num(x: float) -> str:
    """A number as short as it reads back exactly ('1', '-0.5', '0.123456789')."""
    return f"{x:g}" if float(f"{x:g}") == x else repr(x)


def format_prompt(p: Prompt) -> str:
    """The string form of one prompt, 'text:weight[:stop][@region]', as `_split_region` reads it back (a text that
    itself ends in ':number' gets an explicit ':-inf' stop, meaning none, so that its number stays text)."""
    out = f"{p.text}:{_num(p.weight)}" + (f":{_num(p.stop)}" if p.stop is not None else "")
    if p.stop is None and _number(p.text.rpartition(":")[2]) is not None and ":" in p.text:
        out += ":-inf"
    return out + (f"@{p.region}" if p.region is not None else "")


def prompt_items(value: Any, key: str) -> str:
    """A prompt written in YAML as a list (or one mapping) of strings and `{text, weight, stop, mask}` mappings, as the
    canonical 'text:weight:stop|...' string (see `prompt_item`)."""
    items = [value] if isinstance(value, dict) else value
    return "|".join(prompt_item(item, f"{key}[{i}]") for i, item in enumerate(items))


def prompt_item(item: Any, where: str) -> str:
    """One prompt written as a string or a `{text, weight, stop, mask}` mapping (mask: a region name or a mask image
    path), as its string form; unknown keys, wrong types and texts the string form cannot hold are one-line errors
    naming `where`."""
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        raise VqclipError(f"{where}: expected a text or a mapping like {{text: a red circle, weight: 1, stop: -0.5}}, "
                          f"got {shown(item)}")
    for name in item:
        if name not in ITEM_KEYS:
            close = difflib.get_close_matches(str(name), ITEM_KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"the keys are {', '.join(ITEM_KEYS)}"
            raise VqclipError(f"{where}: unknown key {shown(name)}; {hint}")
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise VqclipError(f"{where}.text: expected a non-empty text, got {shown(text)}")
    numbers = []
    for name, default in (("weight", 1.0), ("stop", None)):
        x = item.get(name, default)
        if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float))):
            raise VqclipError(f"{where}.{name}: expected a number, got {shown(x)}")
        numbers.append(None if x is None or (name == "stop" and x == -math.inf) else float(x))
    if not math.isfinite(numbers[0]) or (numbers[1] is not None and not math.isfinite(numbers[1])):
        raise VqclipError(f"{where}: weight and stop must be finite numbers, got {numbers[0]} and {numbers[1]}")
    mask = item.get("mask")
    if mask is not None and (not isinstance(mask, str) or not mask.strip() or any(c.isspace() for c in mask.strip())):
        raise VqclipError(f"{where}.mask: expected a region name (left, right, top, bottom, centre, border) or a mask "
                          f"image path without spaces, got {shown(mask)}")
    region = None if mask is None else check_region(mask.strip(), f"{where}.mask")
    p = Prompt(text.strip(), numbers[0], stop=numbers[1], region=region)
    out = format_prompt(p)
    try:
        back = parse_prompts(out)
    except VqclipError:
        back = []
    if back != [p]:
        raise VqclipError(f"{where}.text: {shown(text)} cannot be written in the prompt syntax ('|' separates prompts, "
                          "a trailing ':' starts a weight); give each part as its own entry")
    return out
