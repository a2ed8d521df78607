"""The `parameters` text chunk of AUTOMATIC1111's web UI, which image browsers and prompt readers parse: the prompt, a
`Negative prompt: ...` line, and one line of `Key: value` pairs (a value with a comma, colon, quote or line break
written as a JSON string). vqclip writes it beside its own JSON chunk, and reads one from another tool's PNG."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

PARAMETERS_KEY = "parameters"
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')  # one `Key: value` of the last line
_SPACE, _KEY_RUN = re.compile(r"\s*"), re.compile(r"[\w \-/]*")  # what a pair starts with, what a key is made of


def quote(value: Any) -> str:
    """A value as the pair line holds it: as written, or as a JSON string where it has `,` `:` `"` or a line break."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if re.search(r'[,:"\n]', text) else text


def format_parameters(prompt: str, negative: str, params: dict[str, Any]) -> str:
    """The chunk's text: the prompt, `Negative prompt: ...` when there is one, then the pairs (None values left out)."""
    pairs = ", ".join(f"{key}: {quote(value)}" for key, value in params.items() if value is not None)
    text = prompt.strip() + (f"\nNegative prompt: {negative.strip()}" if negative.strip() else "") + f"\n{pairs}"
    return text.replace("\0", "").strip()


def _names(path: Optional[str]) -> Optional[str]:
    return Path(path).name if path and ("/" in path or "\\" in path) else path


def _looks(cfg: dict) -> dict[str, Any]:
    """The drawer (when not the default VQGAN) with its own options, and the looks' terms that are on."""
    drawer, palette, symmetry = cfg.get("drawer") or {}, cfg.get("palette") or {}, cfg.get("symmetry") or {}
    name = drawer.get("name", "vqgan")
    on = bool(palette.get("colors") or palette.get("image"))
    return {
        "Drawer": name if name != "vqgan" else None,
        "Pixel size": drawer.get("pixel_size") if name == "pixel" else None,
        "Decay": f"{drawer['decay']:g}" if name == "fft" else None,
        "Cutoff": f"{drawer['cutoff']:g}" if name == "fft" and "cutoff" in drawer else None,
        "Palette": ", ".join(palette.get("colors") or []) or None,
        "Palette image": _names(palette.get("image")),
        "Palette size": palette.get("size") if palette.get("image") else None,
        "Palette weight": f"{palette['weight']:g}" if on else None,
        "Palette hard": "true" if on and palette.get("hard") else None,
        "Symmetry": ", ".join(symmetry.get("axes") or []) or None,
        "Symmetry weight": f"{symmetry['weight']:g}" if symmetry.get("axes") else None,
        "Tile": "true" if cfg.get("tile") else None,
    }


def job_parameters(metadata: dict, vqgan: bool = True) -> str:
    """The chunk of a vqclip run from the metadata of its final.png (the prompt, seed, steps done, config, versions);
    `vqgan`: whether its drawer decodes with the VQGAN (`draw.registry.uses_vqgan`), else no VQGAN is named."""
    cfg = metadata["config"]
    clips = "; ".join(f"{_names(c['model'])}" + (f"/{_names(c['pretrained'])}" if c.get("pretrained") else "")
                      + (f" x{c['weight']:g}" if c.get("weight") != 1 else "") for c in cfg["clip"])
    vqgan = _names(cfg["vqgan"]["checkpoint"]) if vqgan else None
    steps_done = metadata.get("steps_done")
    params = {
        "Steps": cfg["steps"],
        "Steps done": steps_done if steps_done != cfg["steps"] else None,  # stopped early, or frames x steps in a restyle
        "Seed": metadata.get("seed", cfg["seed"]),
        "Size": f"{cfg['size'][0]}x{cfg['size'][1]}",
        "Model": cfg.get("model") or vqgan,  # the preset, or the VQGAN's checkpoint file
        "VQGAN": vqgan if cfg.get("model") else None,
        **_looks(cfg),
        "CLIP models": clips,
        "Cutouts": cfg["cutouts"]["n"],
        "Cut pow": f"{cfg['cutouts']['pow']:g}",
        "Optimizer": cfg["optimizer"]["name"],
        "LR": f"{cfg['optimizer']['lr']:g}",
        "LR schedule": cfg["optimizer"]["schedule"] if cfg["optimizer"]["schedule"] != "constant" else None,
        "Init": cfg["init"]["kind"],
        "TV weight": f"{cfg['tv_weight']:g}" if cfg["tv_weight"] else None,
        "Candidates": cfg["candidates"]["n"] if cfg["candidates"]["n"] > 1 else None,
        "Image prompts": "; ".join(cfg["image_prompts"]) or None,
        "Story mode": cfg["story_mode"] if "^" in cfg["prompt"] or cfg["story"] else None,
        "Animation": cfg["animation"]["mode"] if cfg["animation"]["mode"] != "none" else None,
        "Restyle input": _names(cfg["restyle"]["input"]),
        "Branch of": f"{cfg['branch']['parent']} at step {cfg['branch']['step']}" if cfg.get("branch", {}).get(
            "parent") else None,
        "Stopped": "true" if metadata.get("stopped") else None,
        "Version": f"vqclip {metadata.get('versions', {}).get('vqclip', '')}".strip(),
    }
    return format_parameters(cfg["prompt"], ", ".join(cfg["negative"]), params)


def _pairs(line: str) -> list[tuple[str, str]]:
    """`_PAIR.findall(line)` in linear time. findall tries a match at every character, each scanning the run of
    spaces and key characters after it again (a 1 MB line of letters took hours); where no pair starts, none starts
    later in the same spaces, nor in the same run of key characters unless a ':' ends it, so those are skipped."""
    found, i, end = [], 0, 0
    while i < len(line):
        m = _PAIR.match(line, i)
        if m:
            found.append(m.groups())
            i = max(m.end(), i + 1)
            continue
        word = _SPACE.match(line, i).end()
        if word >= end:  # past the run measured last (inside it, the run ends where it did)
            end = _KEY_RUN.match(line, word).end()
        i = end if end > word and line[end:end + 1] != ":" else max(word, i + 1)
    return found


def parse_parameters(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative prompt, {key: value}) of a `parameters` chunk, read the way the web UI reads it: the last line
    holds the pairs when it has at least three; JSON-quoted values are unquoted."""
    *lines, last = text.strip().split("\n")
    if len(_pairs(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    params = {}
    for key, value in _pairs(last):
        if len(value) > 1 and value[0] == value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        params[key.strip()] = value
    return "\n".join(prompt), "\n".join(negative), params
