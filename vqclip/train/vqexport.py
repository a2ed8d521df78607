"""The VQGAN a training starts from (`--from`: a preset, or CONFIG.yaml+CHECKPOINT), and the trained VQGAN written
as a preset folder (a taming-style config YAML + fp32 safetensors + preset.yaml, a presets file whose entry pins both
files' sha256) that `vqclip generate --model FOLDER` uses like any other preset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import yaml
from safetensors.torch import save_file

from vqclip.errors import VqclipError
from vqclip.files.atomic import atomic_path, write_text
from vqclip.models.presets import PRESET_FILE, get_preset
from vqclip.models.resolve import preset_clip, preset_defaults, resolve_preset
from vqclip.nets.vqgan import VQGAN, load_vqgan, vqgan_spec
from vqclip.train.export import sha256

CONFIG_NAME, WEIGHTS_NAME = "vqgan.yaml", "vqgan.safetensors"


def _pair_form(source: str) -> bool:
    """Is a --from value CONFIG.yaml+CHECKPOINT (rather than a preset or a preset folder)?"""
    return "+" in source and not Path(source).exists()


def check_source(source: str, home_dir: Optional[Path] = None) -> None:
    """The one-line error of a --from that names no preset, preset folder or pair of files; reads and fetches no
    weights, so that a typo is said before a large --data folder is read or a preset downloaded."""
    source = source.strip()
    if _pair_form(source):
        missing = [p for p in source.partition("+")[::2] if not Path(p).expanduser().is_file()]
        if missing:
            raise VqclipError(f"--from {source}: {missing[0]} is not a file; give CONFIG.yaml+CHECKPOINT of a taming "
                              "VQGAN, or a preset (see `vqclip models`)")
        return
    try:
        get_preset(source, home=home_dir)
    except VqclipError:
        raise VqclipError(f"--from {source}: no such preset, preset folder or CONFIG.yaml+CHECKPOINT; give a preset "
                          "(see `vqclip models`), a folder exported by `vqclip train vqgan`, or CONFIG.yaml+CHECKPOINT"
                          ) from None


def source_files(source: str, home_dir: Optional[Path] = None) -> tuple[Path, Path]:
    """(config, checkpoint) of a --from value: a preset's files (fetched once), or CONFIG.yaml+CHECKPOINT."""
    source = source.strip()
    check_source(source, home_dir)
    if _pair_form(source):
        config, _, ckpt = source.partition("+")
        return Path(config).expanduser(), Path(ckpt).expanduser()
    resolved = resolve_preset(source, home=home_dir, fetch_clip_weights=False)
    return Path(resolved.vqgan_config), Path(resolved.vqgan_checkpoint)


def load_source(source: str, device: torch.device, home_dir: Optional[Path] = None) -> tuple[VQGAN, dict]:
    """(the VQGAN to fine-tune, trainable; its taming spec {ddconfig, n_embed, embed_dim})."""
    config, ckpt = source_files(source, home_dir)
    ddconfig, n_embed, embed_dim, gumbel, _ = vqgan_spec(config)
    if gumbel:
        raise VqclipError(f"--from {source}: a GumbelVQ; `vqclip train vqgan` fine-tunes VQModel VQGANs (taming's "
                          "VectorQuantizer2)")
    model = load_vqgan(config, ckpt, device).float().requires_grad_(True)
    return model, {"ddconfig": ddconfig, "n_embed": n_embed, "embed_dim": embed_dim}


def config_yaml(spec: dict) -> str:
    """The taming VQModel YAML of a VQGAN spec (what `load_vqgan` and taming's configs read)."""
    params = {"embed_dim": spec["embed_dim"], "n_embed": spec["n_embed"], "ddconfig": spec["ddconfig"],
              "lossconfig": {"target": "taming.modules.losses.vqperceptual.DummyLoss"}}
    body = {"model": {"target": "taming.models.vqgan.VQModel", "params": params}}
    return "# fine-tuned by `vqclip train vqgan` (taming-transformers VQModel format)\n" + yaml.safe_dump(
        body, sort_keys=False)


def _inherited(source: str, home_dir: Optional[Path]) -> dict:
    """What the exported preset takes from the source preset: its CLIP, defaults and vocabulary, files in the
    source's folder as absolute paths; the default CLIP for a CONFIG+CHECKPOINT source."""
    try:
        preset = get_preset(source, home=home_dir)
    except VqclipError:
        return {"clip": {"model": "ViT-B-32", "pretrained": "openai"}}
    model, pretrained = preset_clip(preset, home_dir, check=False)
    clip = {"model": str(Path(model).absolute()) if Path(model).is_file() else model}
    if pretrained:
        clip["pretrained"] = str(Path(pretrained).absolute()) if Path(pretrained).is_file() else pretrained
    if preset.clip_templates:
        clip["templates"] = list(preset.clip_templates)
    out = {"clip": clip, "defaults": preset_defaults(preset, home_dir)}
    if preset.vocabulary is not None:
        v = preset.vocabulary
        out["vocabulary"] = {"words": sorted(v.words), "grammar": v.grammar, "example": v.example}
    return out


def export_vqgan(model: VQGAN, spec: dict, out: Path, source: str, home_dir: Optional[Path] = None,
                 name: Optional[str] = None) -> Path:
    """Write the VQGAN as a preset folder `out`: vqgan.yaml, vqgan.safetensors (fp32) and preset.yaml (version 1,
    one preset naming both files with their size and sha256, the source preset's CLIP and defaults); each file
    atomically. Returns the folder."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / CONFIG_NAME, config_yaml(spec))
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    files = {n: {"filename": n, "size": (out / n).stat().st_size, "sha256": sha256(out / n)}
             for n in (CONFIG_NAME, WEIGHTS_NAME)}
    entry = {"description": f"VQGAN fine-tuned by `vqclip train vqgan` from {source}",
             "source": f"vqclip train vqgan --from {source}", "licence": "as the source VQGAN's",
             "vqgan": {"config": files[CONFIG_NAME], "checkpoint": files[WEIGHTS_NAME]},
             **{k: v for k, v in _inherited(source, home_dir).items() if v}}
    key = name or "".join(c if c.isalnum() or c in "._-" else "-" for c in out.absolute().parent.name.lower())
    write_text(out / PRESET_FILE, yaml.safe_dump({"version": 1, "presets": {key or "vqgan": entry}},
                                                 sort_keys=False))
    return out
