"""The CLIP a training starts from (`--from`: a preset's, an open_clip MODEL[/TAG], a CLIP folder or architecture
JSON) with its open_clip config; and the trained CLIP written as an open_clip folder (open_clip_config.json +
open_clip_model.safetensors + the files' sha256 + a presets file) that `--clip-model DIR` loads like any other;
trained `--from` a VQGAN's preset folder, the export is itself a preset folder of that VQGAN and this CLIP."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Sequence

import open_clip
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from vqclip.errors import VqclipError
from vqclip.files.atomic import atomic_path, write_text
from vqclip.models.integrity import sha256_file as sha256
from vqclip.models.presets import DEFAULT_PRESET, PRESET_FILE, Preset, get_preset, list_presets
from vqclip.models.resolve import preset_clip, preset_defaults, preset_paths, resolve_clip
from vqclip.models.spec import ClipSpec, openai_name
from vqclip.nets.clip import ClipModel, load_clip

CONFIG_NAME, WEIGHTS_NAME = "open_clip_config.json", "open_clip_model.safetensors"
PRESET_NAME, SHA_NAME = "presets.yaml", "sha256.json"


def preset_folder(source: str) -> Preset | None:
    """The preset of a --from that is a preset folder (DIR/preset.yaml, as `vqclip train vqgan` exports), or None."""
    path = Path(source.strip()).expanduser()
    return get_preset(str(path)) if source.strip() and (path / PRESET_FILE).is_file() else None


def source_spec(source: str) -> tuple[str, str | None]:
    """(model, pretrained) of a --from value: a preset's CLIP (a preset folder's too), an existing folder or JSON, or
    MODEL[/TAG]."""
    source = source.strip()
    if not source:
        raise VqclipError("--from: give a preset (mini), an open_clip MODEL/TAG (ViT-B-32/openai) or a CLIP folder")
    folder = preset_folder(source)
    if folder is not None:
        return preset_clip(folder)
    if source.lower() in list_presets():
        return preset_clip(get_preset(source))
    path = Path(source).expanduser()
    if path.exists():
        return str(path), None
    model, _, tag = source.rpartition("/") if "/" in source and not openai_name(source) else (source, "", "")
    model = model or source
    if ClipSpec.parse(model).form != "name" or model not in open_clip.list_models() and not openai_name(model):
        raise VqclipError(f"--from {source}: no such preset, folder or file, nor an open_clip MODEL/TAG (see "
                          "`vqclip models` and open_clip.list_models())")
    return model, tag or None


def model_config(clip_model: str, pretrained: str | None) -> dict:
    """The open_clip model config (embed_dim, vision_cfg, text_cfg ...) of the CLIP (model, pretrained) names."""
    spec = ClipSpec.parse(clip_model, pretrained)
    if spec.form == "name":
        cfg = dict(open_clip.get_model_config(spec.model))
        tag = open_clip.get_pretrained_cfg(spec.model, spec.pretrained) if spec.pretrained else {}
        if tag and tag.get("quick_gelu"):
            cfg["quick_gelu"] = True
        return cfg
    if spec.form == "hub":
        raise VqclipError(f"--from hf-hub:{spec.model}: download the repository and give its folder instead")
    path = Path(spec.model)
    path = path / CONFIG_NAME if path.is_dir() else path
    data = json.loads(path.read_text(encoding="utf-8"))
    return dict(data.get("model_cfg", data))


def load_source(source: str, device: torch.device) -> tuple[ClipModel, dict]:
    """(the CLIP to fine-tune, loaded by vqclip's loader; its open_clip model config)."""
    model, pretrained = source_spec(source)
    files = resolve_clip(model, pretrained)
    clip = load_clip(files.model, files.pretrained, device, files.cache_dir, like=files.like)
    return clip, model_config(model, pretrained)


def paired_preset(source: str) -> Preset:
    """The preset whose VQGAN the exported CLIP's preset pairs with: --from's own when it names a preset folder or a
    downloadable preset, else the default one (an embedded preset's files live inside the package, out of a user
    preset's reach)."""
    folder = preset_folder(source)
    if folder is not None:
        return folder
    presets = list_presets()
    own = presets.get(source.strip().lower())
    return own if own is not None and not own.embedded else get_preset(DEFAULT_PRESET)


def preset_name(text: str) -> str:
    """`text` as a valid preset name (lowercase letters, digits, '.', '_', '-'), e.g. a run folder's name."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).lstrip("._-")
    return name or "my-clip"


def _file_entry(spec) -> dict:
    """A preset's FileSpec as its YAML mapping (the fields it has)."""
    entry = {"filename": spec.filename, "urls": list(spec.urls), "size": spec.size, "sha256": spec.sha256,
             "approx_size": spec.approx_size}
    return {k: v for k, v in entry.items() if v not in (None, [])}


def _place(src: Path, dst: Path) -> None:
    """`dst` as a hard link to `src` (a large checkpoint is not copied), else an atomic copy (another file system)."""
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def write_preset_folder(out: Path, pair: Preset, templates: Sequence[str], words: Sequence[str], name: str) -> None:
    """Make the CLIP folder `out` a preset folder of this CLIP and the VQGAN of the preset folder `pair`: its two files
    placed beside the CLIP's (sha256 as `pair` recorded them), its job defaults, and its vocabulary (if it has one)
    with the words of the captions trained on added; `out/preset.yaml` names them all."""
    entry = {"description": f"CLIP fine-tuned by vqclip train clip, with the VQGAN of {pair.base}",
             "source": f"vqclip train clip --from {pair.base}", "licence": pair.licence, "vqgan": {}}
    for key, spec, src in zip(("config", "checkpoint"), pair.files, preset_paths(pair)):
        _place(src, out / spec.filename)
        entry["vqgan"][key] = _file_entry(spec)
    entry["clip"] = {"model": CONFIG_NAME, "pretrained": WEIGHTS_NAME, "templates": list(templates)}
    if pair.defaults:
        entry["defaults"] = preset_defaults(pair)
    if pair.vocabulary is not None:
        v = pair.vocabulary
        new = sorted({w for text in words for w in re.findall(r"[^\W_]+", text.lower())} - v.words)
        grammar = v.grammar + (f"; and the words of its fine-tuning captions ({len(new)} more)" if new else "")
        entry["vocabulary"] = {"words": sorted(v.words | set(new)), "grammar": grammar, "example": v.example}
    write_text(out / PRESET_FILE, yaml.safe_dump({"version": 1, "presets": {preset_name(name): entry}},
                                                sort_keys=False))


def export_clip(model: nn.Module, model_cfg: dict, preprocess_cfg, out: Path, templates: Sequence[str] = ("{}",),
                name: str | None = None, pair: Preset | None = None, words: Sequence[str] = ()) -> Path:
    """Write the CLIP as an open_clip folder in `out`, each file atomically: its config with open_clip's
    preprocessing, its weights (fp32 safetensors), sha256.json (each file's sha256 and size) and presets.yaml, a
    presets file whose one preset is this CLIP with the VQGAN of `pair` (default: the default preset); when `pair`
    is a preset folder, `out` becomes a preset folder instead (`write_preset_folder`, the captions `words`). Returns
    the folder."""
    out.mkdir(parents=True, exist_ok=True)
    pre = {k: v for k, v in dataclasses.asdict(preprocess_cfg).items() if k != "size"}
    write_text(out / CONFIG_NAME, json.dumps({"model_cfg": model_cfg, "preprocess_cfg": pre}, indent=2) + "\n")
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    files = {n: {"sha256": sha256(out / n), "size": (out / n).stat().st_size} for n in (CONFIG_NAME, WEIGHTS_NAME)}
    write_text(out / SHA_NAME, json.dumps(files, indent=1) + "\n")
    pair = pair or get_preset(DEFAULT_PRESET)
    if pair.base is not None:  # a preset folder's VQGAN: no presets file can reach its files, so one preset folder
        write_preset_folder(out, pair, templates, words, name or out.absolute().parent.name)
        return out
    entry = {"description": f"CLIP fine-tuned by vqclip train clip ({out.absolute()}), with the {pair.name} VQGAN",
             "source": "vqclip train clip", "vqgan": {"config": _file_entry(pair.vqgan_config),
                                                     "checkpoint": _file_entry(pair.vqgan_checkpoint)},
             "clip": {"model": str(out.absolute()), "templates": list(templates)}}
    name = preset_name(name or out.absolute().parent.name)
    write_text(out / PRESET_NAME, yaml.safe_dump({"version": 1, "presets": {name: entry}}, sort_keys=False))
    return out


def verify_export(out: Path) -> None:
    """A one-line error when an exported folder's files are not the ones its sha256.json recorded."""
    for n, rec in json.loads((out / SHA_NAME).read_text(encoding="utf-8")).items():
        if sha256(out / n) != rec["sha256"]:
            raise VqclipError(f"{out / n}: its sha256 is not the one {SHA_NAME} recorded; export it again")
