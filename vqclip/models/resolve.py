"""From names to local files: a preset's files, verified or fetched once; each CLIP as the file or tag open_clip
loads; every file a job needs, fetched before anything runs, with one error naming all that are missing.

A preset is data (presets.py); resolving one is the same for every preset: its VQGAN files are checked in its
folder (and downloaded there when it lists URLs), its CLIP and guide files named by bare file names are found in
that folder too. The embedded `mini` preset is such a preset whose folder is inside the package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..draw.registry import uses_vqgan
from ..errors import VqclipError
from .clipweights import clip_cache, clips_missing, fetch_clip, hand_placed_clip, placed_or_tag
from .download import DownloadError, fetch, missing_file
from .integrity import Manifest, verify_file
from . import presets
from .presets import DEFAULT_PRESET, MANIFEST_NAME, Preset, _home_or_default, get_preset
from .spec import ClipSpec, check_model_name


@dataclass(frozen=True)
class ResolvedPreset:
    """A preset made concrete: local file paths that exist and passed verification, plus what to load CLIP with.

    Load CLIP with `vqclip.nets.clip.load_clip(clip_model, clip_pretrained, cache_dir=clip_cache_dir)`; apply
    `defaults` (a nested dict in the job-YAML format) beneath the user's own values.
    """

    vqgan_config: Path
    vqgan_checkpoint: Path
    clip_model: str
    clip_pretrained: str | None
    defaults: dict
    name: str = ""
    clip_cache_dir: Path | None = None
    clip_weights: Path | None = None  # a weights file to load instead of the tag (embedded or hand-placed), else None


def preset_paths(preset: Preset, home_dir: Path | None = None) -> tuple[Path, Path]:
    """Where the preset's (config, checkpoint) live: in its folder."""
    base = preset.folder(home_dir)
    return base / preset.vqgan_config.filename, base / preset.vqgan_checkpoint.filename


def preset_clip(preset: Preset, home_dir: Path | None = None, check: bool = True) -> tuple[str, str | None]:
    """The preset's CLIP as (model, pretrained): an open_clip name and tag, or its files in the preset's folder
    (an embedded preset's must be there: a clear error names the missing ones). A path into another install's embedded
    weights (a preset exported from `mini` there) is this install's copy."""
    model, pretrained = (local_embedded(preset.local(p, home_dir)) for p in (preset.clip_model, preset.clip_pretrained))
    if preset.embedded and check:
        own = [Path(p) for p in (model, pretrained) if p and Path(p).parent == preset.folder(home_dir)]
        absent = [str(p) for p in own if not p.is_file()]
        if absent:
            raise VqclipError(f"the embedded '{preset.name}' CLIP is missing: {', '.join(absent)}; reinstall vqclip "
                              "(or build it with `python -m vqclip.mini.train`)")
    return model, pretrained


def preset_defaults(preset: Preset, home_dir: Path | None = None) -> dict:
    """The preset's job defaults, its guide's files (named by bare file names) found in the preset's folder."""
    defaults = dict(preset.defaults)
    guide = defaults.get("guide")
    if isinstance(guide, dict):
        defaults["guide"] = {**guide, **{k: local_embedded(preset.local(guide[k], home_dir))
                                         for k in ("model", "weights") if isinstance(guide.get(k), str)}}
    return defaults


def preset_layer(name: str) -> dict:
    """The config layer a preset contributes beneath the user's values: its CLIP and its job defaults."""
    preset = get_preset(name)
    model, pretrained = preset_clip(preset)
    return {"clip": [{"model": model, "pretrained": pretrained}], **preset_defaults(preset)}


def local_embedded(path: str | None) -> str | None:
    """A path into another vqclip install's embedded weights (from a job.yaml or PNG made there) as this install's
    copy of the same file, so such jobs run anywhere; any other path unchanged."""
    embedded = presets.EMBEDDED_DIR
    if not path or Path(path).exists() or Path(path).parent.parts[-3:] != embedded.parts[-3:]:
        return path
    here = embedded / Path(path).name
    return str(here) if here.is_file() else path


def _present(preset: Preset, paths: list[Path]) -> list[Path]:
    """`paths` of an embedded preset, all present, or a clear error naming the missing ones."""
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise VqclipError(f"the embedded '{preset.name}' model is incomplete: {', '.join(str(p) for p in absent)} "
                          "missing; reinstall vqclip (or build it with `python -m vqclip.mini.train`)")
    return paths


def resolve_preset(name: str, *, home: Path | None = None, download: bool = True, progress: bool = True,
                   presets_file: str | os.PathLike | None = None, timeout: float = 30.0,
                   fetch_clip_weights: bool = True) -> ResolvedPreset:
    """Local, verified files for preset `name`, downloading what is missing (once) when `download` is true and the
    preset lists URLs.

    Files already on disk are size- and sha256-checked (pinned hash, else the one recorded in the manifest on
    first download). Everything that cannot be fetched is reported in one VqclipError naming each file, its URLs
    and the exact path to put it at.
    """
    home_dir = _home_or_default(home)
    preset = get_preset(name, home=home_dir, presets_file=presets_file)
    clip_model, clip_pretrained = preset_clip(preset, home_dir, check=False)  # checked with the VQGAN's files
    defaults = preset_defaults(preset, home_dir)
    if preset.embedded:  # nothing to download: the files ship with the package
        own = [p for p in (clip_model, clip_pretrained) if p and Path(p).parent == preset.folder()]
        config, checkpoint, *_ = _present(preset, [*preset_paths(preset), *map(Path, own)])
        return ResolvedPreset(config, checkpoint, clip_model, clip_pretrained, defaults, name=preset.name,
                              clip_weights=Path(clip_pretrained) if clip_pretrained and Path(clip_pretrained).is_file()
                              else None)
    manifest = Manifest(home_dir / MANIFEST_NAME)
    paths, problems = [], []
    for spec, dest in zip(preset.files, preset_paths(preset, home_dir)):
        paths.append(dest)
        if dest.is_file():
            verify_file(dest, spec, manifest)
        elif not download:
            problems.append(missing_file(spec, dest, []))
        else:
            try:
                fetch(spec, home_dir, progress=progress, timeout=timeout, manifest=manifest)
            except DownloadError as exc:
                problems.extend(exc.missing)
    clip_weights = None
    if fetch_clip_weights and clip_pretrained and not ClipSpec.parse(clip_model, clip_pretrained).weights_file:
        placed = hand_placed_clip(clip_model, clip_pretrained, home)
        if placed is not None:
            clip_model, clip_pretrained = placed
            clip_weights = Path(clip_pretrained)
        elif download:
            try:
                fetch_clip(clip_model, clip_pretrained, home)
            except DownloadError as exc:
                problems.extend(exc.missing)
    if problems:
        n = len(problems)
        raise DownloadError(problems, None if download else
                            f"model '{preset.name}' needs {n} file{'s' * (n != 1)} not on disk and downloads are off")
    return ResolvedPreset(paths[0], paths[1], clip_model, clip_pretrained, defaults, name=preset.name,
                          clip_cache_dir=clip_cache(home), clip_weights=clip_weights)


@dataclass(frozen=True)
class ClipFiles:
    """What `load_clip` takes for one CLIP: (model, pretrained) as open_clip loads them, its cache folder, and `like`:
    the tag a local weights file stands in for (whose preprocessing and QuickGELU then apply)."""

    model: str
    pretrained: Optional[str]
    cache_dir: Path
    like: Optional[str] = None
    weight: float = 1.0


def resolve_clip(model: str, pretrained: Optional[str], weight: float = 1.0,
                 home_dir: Optional[Path] = None) -> ClipFiles:
    """One CLIP's files: a tag's local copy (hand-placed in `<home>/clip`, or fetched earlier into the CLIP cache)
    stands in for the tag, so that loading asks no server again; 'none' means random weights. `home_dir` None: the
    default home (and the Hugging Face cache unless $VQCLIP_HOME is set)."""
    spec = ClipSpec.parse(model, pretrained)
    like = None
    model = {"name": spec.model, "hub": f"hf-hub:{spec.model}"}.get(spec.form, model)  # ViT-B/32 as ViT-B-32
    pretrained = spec.pretrained
    if spec.form == "name" and pretrained and not spec.weights_file:
        model, pretrained, like = placed_or_tag(model, pretrained, home_dir)
    return ClipFiles(model, pretrained, clip_cache(home_dir), like, weight)


def _offline_instead(model: Optional[str]) -> str:
    """What runs without a download, said first in an offline error: the built-in preset (the first embedded one),
    unless the job uses it already (then its other CLIPs are what is missing)."""
    built_in = next((name for name, p in presets.list_presets().items() if p.embedded), None)
    if built_in is None or model == built_in:
        return ""
    return f"the built-in {built_in} preset (--model {built_in}) runs without a download"


@dataclass(frozen=True)
class JobFiles:
    """Every model file a job needs, local: the VQGAN's (None for a drawer that uses none), each CLIP's (and the
    best-of-n judges'), the guide's."""

    vqgan_config: Optional[str]
    vqgan_checkpoint: Optional[str]
    clips: list[ClipFiles] = field(default_factory=list)
    judges: list[ClipFiles] = field(default_factory=list)
    guide: Optional[tuple[str, str]] = None


def job_files(cfg) -> JobFiles:
    """The files of a job (`GenerateConfig`): named VQGAN files, else the preset's, fetched once (none at all for a
    drawer that uses no VQGAN); every CLIP tag's weights fetched as well, so that a machine offline gets one error
    naming every file it lacks."""
    vq_config, vq_ckpt = cfg.vqgan.config, cfg.vqgan.checkpoint
    needs_vqgan = uses_vqgan(cfg.drawer.name)
    if not needs_vqgan:
        vq_config = vq_ckpt = None
    elif bool(vq_config) != bool(vq_ckpt):
        raise VqclipError("vqgan: give both config (YAML) and checkpoint, or neither and a --model preset")
    judges = cfg.candidates.clip if cfg.candidates.n > 1 else []  # unused at n = 1: not loaded
    specs = [(c.model, c.pretrained) for c in (*cfg.clip, *judges)]
    named = [s for s in specs if ClipSpec.parse(*s).form == "name"]
    for model, _ in named:  # before any download: a misspelt CLIP is one line, not an error after 1 GB
        check_model_name(model)
    missing = []
    if needs_vqgan and not vq_config:
        try:
            resolved = resolve_preset(cfg.model or DEFAULT_PRESET, download=True, progress=cfg.output.progress,
                                      fetch_clip_weights=False)
            vq_config, vq_ckpt = str(resolved.vqgan_config), str(resolved.vqgan_checkpoint)
        except DownloadError as exc:
            missing += exc.missing
    missing += clips_missing(named)
    if missing:
        raise DownloadError(missing, instead=_offline_instead(cfg.model))
    g = cfg.guide
    guide = (g.model, g.weights) if g.model and g.weights and g.weight > 0 else None
    return JobFiles(vq_config, vq_ckpt, [resolve_clip(c.model, c.pretrained, c.weight) for c in cfg.clip],
                    [resolve_clip(c.model, c.pretrained, c.weight) for c in judges], guide)
