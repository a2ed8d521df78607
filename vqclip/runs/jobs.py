"""A job from its config layers: defaults <- preset <- the drawer's defaults <- a PNG's job (`--from`) <- YAML files
<- the command line, and the jobs of a job file (`jobs:` lists)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterable, Optional

from ..config import GenerateConfig, merge_layers
from ..draw import registry as drawers
from ..errors import VqclipError
from ..files.images import MAX_METADATA, METADATA_KEY, read_metadata, read_png_text
from ..files.infotext import PARAMETERS_KEY, parse_parameters
from ..files.jobyaml import load_yaml
from ..files.runfolder import FINAL_FILE, FRAMES_DIR, JOB_FILE, MASK_FILE, STATE_FILE
from ..models.presets import DEFAULT_PRESET
from ..models.resolve import local_embedded, preset_layer
from ..modes.registry import resolve
from .regionfiles import own_regions


log = logging.getLogger("vqclip")

_NUMBER = r"\d+(\.\d*)?(e-?\d+)?"
# the drawer and the looks vqclip writes in a `parameters` chunk (`files.infotext`): its key, the job key, the form of
# its value (a list: comma-separated words), what it becomes; the config's checks judge the values themselves
LOOKS = [("Drawer", "drawer.name", r"\w+", str), ("Pixel size", "drawer.pixel_size", r"\d+", int),
         ("Decay", "drawer.decay", _NUMBER, float), ("Cutoff", "drawer.cutoff", _NUMBER, float),
         ("Palette", "palette.colors", r"[#\w]+(, *[#\w]+)*", list),
         ("Palette weight", "palette.weight", _NUMBER, float), ("Palette hard", "palette.hard", "true", bool),
         ("Symmetry", "symmetry.axes", r"\w+(, *\w+)*", list), ("Symmetry weight", "symmetry.weight", _NUMBER, float),
         ("Tile", "tile", "true", bool)]


def png_layer(path: str | Path) -> dict:
    """The config embedded in a vqclip PNG, minus its output folder (a re-run goes to a new one); from a PNG of
    another tool, what its A1111-style `parameters` chunk says (`parameters_layer`)."""
    texts = read_png_text(path)
    if METADATA_KEY not in texts and PARAMETERS_KEY in texts:
        return parameters_layer(path, texts[PARAMETERS_KEY])
    config = dict(read_metadata(path)["config"])
    if isinstance(config.get("output"), dict):  # anything else is reported by the merge, naming the PNG and the key
        config["output"] = {k: v for k, v in config["output"].items() if k != "dir"}
    return own_mask(config, Path(path).parent)


def own_mask(config: dict, folder: Path) -> dict:
    """A job layer whose edit mask is gone from where it names it (a run folder moved, or written on a cluster's
    worker) but kept in `folder` as mask.png: that one (the run's own copy of it); its region masks likewise
    (`regionfiles.own_regions`)."""
    init = config.get("init")
    mask = init.get("mask") if isinstance(init, dict) else None
    if isinstance(mask, str) and mask and not Path(mask).is_file() and (folder / MASK_FILE).is_file():
        config = {**config, "init": {**init, "mask": str(folder / MASK_FILE)}}
    return own_regions(config, folder)


def parameters_layer(path: str | Path, text: str) -> dict:
    """The prompt, negative prompt, seed and size of an A1111-style `parameters` chunk (the web UI's, or another
    tool's) as a job layer; its steps, drawer and looks (`LOOKS`) only when vqclip wrote it (a sampler's 20 steps are
    no VQGAN+CLIP run), the rest (sampler, CFG scale, model) has no meaning here and is left out."""
    if len(text) > MAX_METADATA:
        raise VqclipError(f"{path}: its parameters chunk is {len(text) / 1e6:.1f} MB, far more than any job")
    prompt, negative, params = parse_parameters(text)
    layer: dict = {"prompt": prompt}
    if negative:
        layer["negative"] = [negative]
    taken = ["prompt"] + (["negative prompt"] if negative else [])
    wanted = [("Seed", "seed", r"-?\d+")] + ([("Steps", "steps", r"\d+")] if params.get("Version", "").startswith(
        "vqclip") else [])
    for key, name, pattern in wanted:
        if key in params:
            if not re.fullmatch(pattern, params[key].strip()):
                raise VqclipError(f"{path}: its parameters say {key}: {params[key][:40]!r}, not a whole number")
            layer[name] = int(params[key])
            taken.append(name)
    if "Size" in params:
        size = re.fullmatch(r"(\d+)x(\d+)", params["Size"].strip())
        if not size:
            raise VqclipError(f"{path}: its parameters say Size: {params['Size'][:40]!r}, not WIDTHxHEIGHT")
        layer["size"] = [int(size.group(1)), int(size.group(2))]
        taken.append("size")
    for key, name, pattern, kind in LOOKS if params.get("Version", "").startswith("vqclip") else ():
        if key in params:
            text = params[key].strip()
            if not re.fullmatch(pattern, text):
                raise VqclipError(f"{path}: its parameters say {key}: {params[key][:40]!r}, not a {name} value")
            *outer, last = name.split(".")
            at = layer
            for part in outer:
                at = at.setdefault(part, {})
            at[last] = [w.strip() for w in text.split(",")] if kind is list else kind(text)  # bool: only "true"
            taken.append(name)
    log.info("%s holds no vqclip job, only A1111-style parameters: took its %s", path, ", ".join(taken))
    return layer


def build_config(cli: Optional[dict] = None, yaml_files: Iterable[str | Path] = (), from_png: str | Path | None = None,
                 base: Optional[list[tuple[str, dict]]] = None, source: str = "command line") -> GenerateConfig:
    """Defaults <- preset <- the drawer's defaults <- --from PNG <- YAML files <- CLI, strictly checked; the preset is
    the last one named, the drawer too (`drawer_name`).
    `source` names the `cli` layer in errors (the Python API's keywords are no command line)."""
    layers: list[tuple[str, dict]] = list(base or [])
    if from_png:
        layers.append((str(from_png), png_layer(from_png)))
    for y in yaml_files:
        data = rerun_layer(y, load_yaml(y))
        if isinstance(data, dict) and "jobs" in data:
            raise VqclipError(f"{y}: holds a list of jobs (`jobs:`), which --config cannot take; run it with "
                              f"`vqclip run {y}`")
        if isinstance(data, dict) and "sweep" in data:
            raise VqclipError(f"{y}: holds a sweep (`sweep:`), which --config cannot take; run it with "
                              f"`vqclip run {y}`")
        layers.append((str(y), data))
    if cli:
        layers.append((source, cli))
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
    drawer = drawer_name(layers)
    # a still image's steps scaled for a cheaper drawer (a video's steps set its length: those stay)
    steps = None if any(_is_video(layer) for _, layer in layers) else (
        layers[0][1].get("steps", GenerateConfig().steps) if model is not None else GenerateConfig().steps)
    own = drawers.defaults(drawer, steps)
    if own:  # over the preset's defaults, beneath the user's values
        layers.insert(1 if model is not None else 0, (f"drawer {drawer}", own))
    return local_weights(merge_layers(layers))


def drawer_name(layers: list[tuple[str, dict]]) -> Optional[str]:
    """The drawer a job's layers choose (the last layer that names one), or None when none names one (vqgan)."""
    for _, layer in reversed(layers):
        drawer = layer.get("drawer") if isinstance(layer, dict) else None
        if isinstance(drawer, dict) and drawer.get("name") is not None:
            return drawer["name"]
    return None


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
    zoom = isinstance(animation, dict) and animation.get("mode") == "zoom"
    return resolve(layer.get("mode"), zoom, isinstance(restyle, dict) and bool(restyle.get("input"))) != "still"


def rerun_layer(path: str | Path, data: dict) -> dict:
    """A job file as a re-run reads it: a run's own job.yaml (in the folder that holds the run) without its
    output.dir, so that running it again makes a new run folder (outputs/<time>-<prompt>, or --out) instead of
    meeting the run it came from, as `--from final.png` does; any other job file as it is."""
    path = Path(path)
    output = data.get("output") if isinstance(data, dict) else None
    if path.name != JOB_FILE or not isinstance(output, dict) or not output.get("dir"):
        return data
    if not any((path.parent / marker).exists() for marker in (FINAL_FILE, FRAMES_DIR, STATE_FILE)):
        return data
    log.info("%s is the job of the run in %s: running it again makes a new run folder", path, path.parent)
    return {**data, "output": {k: v for k, v in output.items() if k != "dir"}}


def jobs_from_file(path: str | Path) -> list[dict]:
    """The jobs of a YAML file: the file itself (a run's own job.yaml as `rerun_layer` reads it), or each entry of its
    `jobs:` list over the file's other keys."""
    data = rerun_layer(path, load_yaml(path))
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
