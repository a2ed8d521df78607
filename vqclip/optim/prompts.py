"""Prompt syntax: "text:weight|text:weight", negative prompts, "path:weight" image prompts (torch-free: the config
checks a job's prompts with it before anything heavy is imported)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import VqclipError


@dataclass(frozen=True)
class Prompt:
    """One target: a text or an image path, with its weight (negative = push the image away from it)."""

    text: str  # the text, or the image path when `image` is set
    weight: float = 1.0
    image: bool = False


def _split_weight(item: str, what: str) -> Prompt:
    """'text:1.5' -> Prompt('text', 1.5); a colon not followed by a number is part of the text."""
    body, sep, tail = item.rpartition(":")
    if sep and tail.strip() == "" and body.strip():
        raise VqclipError(f"{what} '{item}' has an empty weight after ':'; write '{body.strip()}:1' or drop the colon")
    try:
        weight = float(tail) if sep else None
    except ValueError:
        weight = None
    if weight is None:
        body, weight = item, 1.0
    if not math.isfinite(weight):
        raise VqclipError(f"{what} '{item}': weight must be a finite number")
    if not body.strip():
        raise VqclipError(f"{what} '{item}' has no text before the weight")
    return Prompt(body.strip(), weight)


def parse_prompts(spec: str) -> list[Prompt]:
    """Parse 'a red circle:1|blurry:-0.5' into prompts; empty parts and non-finite weights are errors."""
    if not spec.strip():
        return []
    parts = spec.split("|")
    if any(not p.strip() for p in parts):
        raise VqclipError(f"prompt '{spec}' has an empty part between '|'; write 'a:1|b:0.5'")
    return [_split_weight(p.strip(), "prompt") for p in parts]


def parse_negatives(items: list[str]) -> list[Prompt]:
    """`--negative TEXT` entries: weight -1 unless given; a positive weight is made negative."""
    out = []
    for item in items:
        p = _split_weight(item.strip(), "negative prompt")
        out.append(Prompt(p.text, -abs(p.weight)))
    return out


def parse_image_prompt(item: str) -> Prompt:
    """'path/to/image.png:0.5' -> Prompt(path, 0.5, image=True); the weight is optional."""
    p = _split_weight(item.strip(), "image prompt")
    return Prompt(p.text, p.weight, image=True)


def parse_job_prompts(prompt: str, negative: list[str], image_prompts: list[str]) -> list[Prompt]:
    """A job's text, negative and image prompts, parsed: what a run optimises, and what the config check tries early."""
    return parse_prompts(prompt) + parse_negatives(negative) + [parse_image_prompt(p) for p in image_prompts]


def check_has_target(prompts: list[Prompt]) -> None:
    """Generation needs at least one positive target to aim at."""
    if not any(p.weight > 0 for p in prompts):
        raise VqclipError("nothing to aim at: give a prompt (or --image-prompt) with a positive weight")
