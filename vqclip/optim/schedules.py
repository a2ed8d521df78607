"""Prompt schedules (a story of keyframes, switched or blended) and key-framed scalars; pure functions, no torch.

A story is a list of keyframes `(at, prompt, weight)`: from step `at` on, `prompt` ("text:w:stop|text:w") is the target,
scaled by `weight`. In "switch" mode the last keyframe at or before a step is active alone; in "blend" mode the
weights move linearly from one keyframe to the next. Before the first keyframe the first one holds, after the last
one the last holds. The `^` shorthand ("a ^ b ^ c") becomes keyframes every `change_every` steps (or spread evenly).
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from ..errors import VqclipError, shown
from .prompts import Prompt, parse_negatives, parse_prompts

STORY_MODES = ("switch", "blend")
LR_SCHEDULES = ("constant", "cosine", "linear")
STORY_SEPARATOR = "^"


@dataclass(frozen=True)
class Keyframe:
    """One story keyframe: from step `at` on, aim at `prompt` ("text:w|text:w") scaled by `weight`."""

    at: int
    prompt: str
    weight: float = 1.0


def split_story(prompt: str) -> list[str]:
    """'a ^ b ^ c' -> ['a', 'b', 'c']; an empty part is an error."""
    parts = [p.strip() for p in prompt.split(STORY_SEPARATOR)]
    if any(not p for p in parts):
        raise VqclipError(f"prompt {shown(prompt)} has an empty story part between '^'; write 'first scene ^ second "
                          "scene'")
    return parts


def story_from_shorthand(prompt: str, steps: int, change_every: int = 0, unit: str = "steps") -> list[Keyframe]:
    """'a ^ b' -> keyframes every `change_every` steps, or spread evenly over `steps` (a restyle's `unit`: input
    frames) when it is 0, which needs one at least for each part."""
    parts = split_story(prompt)
    if change_every > 0:
        return [Keyframe(i * change_every, p) for i, p in enumerate(parts)]
    if len(parts) > steps:
        one = unit.removesuffix("s") if steps == 1 else unit
        raise VqclipError(f"prompt '{prompt}' has {len(parts)} story parts but {steps} {one} to spread them over; "
                          f"give at least {len(parts)} {unit} or set change_every")
    return [Keyframe(round(i * steps / len(parts)), p) for i, p in enumerate(parts)]


def check_keyframes(keyframes: Sequence[Keyframe], where: str = "story") -> list[Keyframe]:
    """Keyframes sorted by step; negative or repeated steps, bad prompts and non-finite weights are errors."""
    seen: set[int] = set()
    for k in keyframes:
        if k.at < 0:
            raise VqclipError(f"{where}: keyframe at {k.at} is negative; steps start at 0")
        if k.at in seen:
            raise VqclipError(f"{where}: two keyframes at step {k.at}; give each step once")
        seen.add(k.at)
        if not k.prompt.strip():
            raise VqclipError(f"{where}: the keyframe at step {k.at} has no prompt")
        if not math.isfinite(k.weight):
            raise VqclipError(f"{where}: the keyframe at step {k.at} has a non-finite weight")
        parse_prompts(k.prompt)  # raises on a malformed prompt
    return sorted(keyframes, key=lambda k: k.at)


class PromptSchedule:
    """The union of all keyframe prompts (`prompts`, weights 1, each text with its stop) and their weights at any
    step."""

    def __init__(self, keyframes: Sequence[Keyframe], mode: str = "switch"):
        if mode not in STORY_MODES:
            raise VqclipError(f"story_mode: unknown value {shown(mode)}; use one of {', '.join(STORY_MODES)}")
        if not keyframes:
            raise VqclipError("story: no keyframes; give at least one {at: STEP, prompt: TEXT}")
        self.keyframes, self.mode = check_keyframes(keyframes), mode
        index: dict[tuple[str, Optional[float], Optional[str]], int] = {}
        rows: list[dict[int, float]] = []
        for k in self.keyframes:  # each keyframe as a sparse vector over the union of (text, stop, region) targets
            row: dict[int, float] = {}
            for p in parse_prompts(k.prompt):
                i = index.setdefault((p.text, p.stop, p.region), len(index))
                row[i] = row.get(i, 0.0) + p.weight * k.weight
            rows.append(row)
        self.prompts = [Prompt(text, stop=stop, region=region) for text, stop, region in index]
        self._rows = [[row.get(i, 0.0) for i in range(len(index))] for row in rows]
        self._ats = [k.at for k in self.keyframes]

    def weights_at(self, step: float) -> list[float]:
        """Weight of each of `prompts` at a step (switch: the active keyframe's; blend: linear between neighbours)."""
        i = bisect.bisect_right(self._ats, step) - 1
        if i < 0:
            return list(self._rows[0])
        if self.mode == "switch" or i == len(self._ats) - 1:
            return list(self._rows[i])
        t = (step - self._ats[i]) / (self._ats[i + 1] - self._ats[i])
        return [(1 - t) * a + t * b for a, b in zip(self._rows[i], self._rows[i + 1])]

    def check_targets(self, where: str = "story") -> None:
        """Every step must have a prompt with a positive weight to aim at: each keyframe, and in blend mode every
        point between two keyframes (the largest of the blended weights is convex between them, so it is checked
        at the keyframes and where two prompts' weight lines cross). A one-line error names the step otherwise."""
        for i, k in enumerate(self.keyframes):
            if max(self._rows[i], default=0.0) <= 0:
                raise VqclipError(f"{where}: the keyframe at step {k.at} ({shown(k.prompt)}, weight {k.weight:g}) has "
                                  "nothing to aim at; give it a prompt with a positive weight")
        if self.mode != "blend":
            return
        for i in range(len(self._ats) - 1):
            a, b = self._rows[i], self._rows[i + 1]
            ts = [(a[p] - a[q]) / ((a[p] - a[q]) - (b[p] - b[q])) for p in range(len(a)) for q in range(p)
                  if (a[p] - a[q]) != (b[p] - b[q])]
            for t in (t for t in ts if 0 < t < 1):
                if max((1 - t) * x + t * y for x, y in zip(a, b)) <= 1e-12:
                    at = self._ats[i] + t * (self._ats[i + 1] - self._ats[i])
                    raise VqclipError(f"{where}: blending the keyframes at steps {self._ats[i]} and {self._ats[i + 1]} "
                                      f"leaves nothing with a positive weight at step {at:g}; use story_mode: "
                                      "switch, or keep a prompt positive in both keyframes")

    def active(self, step: float) -> dict[str, float]:
        """The prompts with a non-zero weight at a step, as {text: weight} (for logs and tests)."""
        return {p.text: w for p, w in zip(self.prompts, self.weights_at(step)) if w != 0}


def story_keyframes(prompt: str, story: Iterable[Any], steps: int, change_every: int,
                    unit: str = "steps") -> list[Keyframe]:
    """The keyframes of a job: its `story:` list, else the `^` shorthand of its prompt spread over `steps` (counted in
    `unit`: a restyle's are input frames); [] for a plain prompt."""
    story = list(story)
    if story and STORY_SEPARATOR in prompt:
        raise VqclipError("give the story either as 'a ^ b' in prompt or as a story: list, not both")
    if story:
        return [Keyframe(int(k.at), str(k.prompt), float(k.weight)) for k in story]
    if STORY_SEPARATOR in prompt:
        return story_from_shorthand(prompt, steps, change_every, unit)
    return []


def job_texts(cfg) -> list[str]:
    """Every text a job's CLIP embeds: the parts of its prompt (each part of a story), its story keyframes' and its
    negatives (not its image prompts)."""
    parts = cfg.prompt.count(STORY_SEPARATOR) + 1  # only the texts matter here: enough steps for every part
    keyframes = story_keyframes(cfg.prompt, cfg.story, max(cfg.steps, parts), cfg.change_every)
    specs = [k.prompt for k in keyframes] + ([] if STORY_SEPARATOR in cfg.prompt else [cfg.prompt])
    return [p.text for spec in specs for p in parse_prompts(spec)] + [p.text for p in parse_negatives(cfg.negative)]


def job_regions(cfg) -> list[str]:
    """Every region (name or mask image path) a job's prompts, story parts, keyframes and negatives aim at, once each,
    in order."""
    parts = max(cfg.steps, cfg.prompt.count(STORY_SEPARATOR) + 1)  # enough steps for every part, as job_texts
    keyframes = story_keyframes(cfg.prompt, cfg.story, parts, cfg.change_every)
    specs = [k.prompt for k in keyframes] + ([] if STORY_SEPARATOR in cfg.prompt else [cfg.prompt])
    prompts = [p for spec in specs for p in parse_prompts(spec)] + parse_negatives(cfg.negative)
    return list(dict.fromkeys(p.region for p in prompts if p.region is not None))


# ---- key-framed scalars: a constant, {step: value}, [[step, value], ...] or "0:1.0, 50:(1.05)" ----

_PAIR = re.compile(r"^\s*(-?\d+(?:\.\d*)?)\s*:\s*\(?\s*([-+0-9.eE]+)\s*\)?\s*$")


def parse_keyframed(value: Any, name: str) -> list[tuple[float, float]]:
    """Sorted (step, value) pairs of a constant or key-framed setting; one-line error naming `name` otherwise."""
    hint = f"{name}: expected a number, {{step: value}}, [[step, value], ...] or '0:1.0, 50:1.05'"
    if isinstance(value, bool):
        raise VqclipError(f"{hint}, got {shown(value)}")
    if isinstance(value, (int, float)):
        pairs = [(0.0, _number(value, hint))]
    elif isinstance(value, dict):
        pairs = [(_number(k, hint), _number(v, hint)) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        pairs = []
        for item in value:
            if isinstance(item, dict) and set(item) == {"at", "value"}:
                pairs.append((_number(item["at"], hint), _number(item["value"], hint)))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                pairs.append((_number(item[0], hint), _number(item[1], hint)))
            else:
                raise VqclipError(f"{hint}, got the entry {shown(item)}")
    elif isinstance(value, str):
        pairs = []
        for part in filter(str.strip, value.split(",")):
            m = _PAIR.match(part)
            if not m:
                raise VqclipError(f"{hint}, got the part {shown(part.strip())}")
            pairs.append((_number(m.group(1), hint), _number(m.group(2), hint)))
    else:
        raise VqclipError(f"{hint}, got {type(value).__name__}")
    if not pairs:
        raise VqclipError(f"{hint}, got nothing")
    pairs.sort()
    steps = [s for s, _ in pairs]
    if len(set(steps)) != len(steps) or steps[0] < 0:
        raise VqclipError(f"{name}: keyframe steps must be >= 0 and each given once, got {shown(steps)}")
    return pairs


def _number(x: Any, hint: str) -> float:
    if isinstance(x, bool):
        raise VqclipError(f"{hint}, got {shown(x)}")
    try:
        out = float(x)
    except (TypeError, ValueError):
        raise VqclipError(f"{hint}, got {shown(x)}") from None
    if not math.isfinite(out):
        raise VqclipError(f"{hint}, got a non-finite {shown(x)}")
    return out


def value_at(pairs: Sequence[tuple[float, float]], step: float) -> float:
    """A key-framed value at a step: linear between keyframes, held before the first and after the last."""
    steps = [s for s, _ in pairs]
    i = bisect.bisect_right(steps, step) - 1
    if i < 0:
        return pairs[0][1]
    if i == len(pairs) - 1:
        return pairs[-1][1]
    (s0, v0), (s1, v1) = pairs[i], pairs[i + 1]
    return v0 + (v1 - v0) * (step - s0) / (s1 - s0)


# ---- learning-rate schedules ----

def learning_rate(schedule: str, lr: float, min_factor: float, step: int, steps: int) -> float:
    """The learning rate at `step` of `steps`: constant; cosine (torch's CosineAnnealingLR) or linear (LinearLR) decay
    from `lr` to `lr * min_factor` at the last step, held after it."""
    t = min(step / max(1, steps), 1.0)
    if schedule == "cosine":
        return lr * (min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t)))
    if schedule == "linear":
        return lr * (1 - (1 - min_factor) * t)
    if schedule == "constant":
        return lr
    raise VqclipError(f"optimizer.schedule: unknown value {shown(schedule)}; use one of {', '.join(LR_SCHEDULES)}")
