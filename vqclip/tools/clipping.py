"""CLIP's other jobs as a Python API taking plain arguments: which CLIPs (a preset's, open_clip names or files,
several averaged), and classify, score, rank and search on image files. `vqclip classify|search|score|rank` only
parse their options into these calls.

    from vqclip.tools.clipping import ClipChoice, classify
    classify(["photos/"], ["a cat", "a dog"], clips=ClipChoice(model="mini"))
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from torch import Tensor

from ..errors import VqclipError, reason
from ..files.images import read_png_json
from ..files.runfolder import FINAL_FILE as RANK_IMAGE
from ..files.scores import final_score, read_scores
from ..models.clipweights import clips_missing
from ..models.download import DownloadError
from ..models.presets import DEFAULT_CLIP, get_preset
from ..models.resolve import ClipFiles, preset_clip, resolve_clip
from ..models.spec import ClipSpec, canonical_model
from ..nets.clip import ClipModel
from ..nets.device import pick_device
from .clipjobs import (DEFAULT_TEMPLATES, IMAGE_SUFFIXES, check_templates, classify_embeddings, embed_image_files,
                       expand_image_args, load_image_file, logit_scale, parse_score_prompt, prompt_scores, scan_images,
                       text_classifier)
from .search import ImageIndex, search_all

log = logging.getLogger("vqclip")


@dataclass(frozen=True)
class ClipChoice:
    """Which CLIPs a job uses, on which device: a preset's (`model`), else open_clip names or architecture files
    (`clip_models`, several averaged), each with its `clip_pretrained` tag or weights file; none: the default CLIP."""

    model: Optional[str] = None
    clip_models: tuple[str, ...] = ()
    clip_pretrained: tuple[str, ...] = ()
    device: str = "auto"


def clip_specs(choice: ClipChoice) -> list[ClipFiles]:
    """The CLIPs a choice names, resolved to what `load_clip` takes; one pretrained per model, in the same order
    (or one for a single model or a preset's CLIP)."""
    models, tags = [canonical_model(m) for m in choice.clip_models], list(choice.clip_pretrained)
    if len(tags) > max(len(models), 1) or (len(models) > 1 and tags and len(tags) != len(models)):
        raise VqclipError("--clip-pretrained: give one per --clip-model, in the same order")
    if not models:
        model, pretrained = preset_clip(get_preset(choice.model)) if choice.model else DEFAULT_CLIP
        pairs = [(model, tags[0] if tags else pretrained)]
    else:
        pairs = [(m, tags[i] if tags else (DEFAULT_CLIP[1] if ClipSpec.parse(m).form == "name" else None))
                 for i, m in enumerate(models)]
    return [resolve_clip(model, pretrained) for model, pretrained in pairs]


def preset_templates(choice: ClipChoice) -> list[str]:
    """The prompt templates the preset's CLIP knows (the mini CLIP: its own captions only), or [] for the usual."""
    return list(get_preset(choice.model).clip_templates) if choice.model and not choice.clip_models else []


def load_clips(choice: ClipChoice) -> list[ClipModel]:
    """The CLIP models a choice names, on its device (fetched first, one error naming every missing file)."""
    from ..nets.load import ModelCache  # the loaders and their caches come with the first job that loads a model
    device = pick_device(choice.device)
    specs = clip_specs(choice)
    missing = clips_missing([(c.model, c.pretrained) for c in specs if c.like is None])
    if missing:
        raise DownloadError(missing)
    cache, clips = ModelCache(), []
    for files in specs:
        clips.append(cache.clip(files, device))
        if choice.model and not choice.clip_models:
            log.info("CLIP of preset %s (%s) on %s", choice.model, Path(files.model).name, device)
        else:
            log.info("CLIP %s on %s", clips[-1].name, device)
    return clips


def embed_files(clips: Sequence[ClipModel], paths: Sequence[Path], batch_size: int = 32,
                progress: bool = False) -> tuple[list[Path], list[Tensor]]:
    """(readable paths, unit embeddings [N,D] per CLIP) of image files, skipping bad ones (warned about once); an
    error when none is readable."""
    kept, embs = list(paths), []
    for clip in clips:
        got, emb = embed_image_files(clip, kept, batch_size, progress=progress)
        if not got:
            raise VqclipError(f"none of the {len(paths)} images could be read; check the files")
        if len(got) != len(kept):  # a file that became unreadable meanwhile drops out for every CLIP
            row = {p: i for i, p in enumerate(kept)}
            embs = [e[[row[p] for p in got]] for e in embs]
        kept, embs = got, embs + [emb]
    return kept, embs


def averaged(clips: Sequence[ClipModel], embs: Sequence[Tensor], score: Callable[[ClipModel, Tensor], Tensor]):
    """`score(clip, its embeddings)` averaged over several CLIPs: how they vote on probabilities and scores."""
    return sum(score(clip, emb) for clip, emb in zip(clips, embs, strict=True)) / len(clips)


def ranked(records: list[dict], top: Optional[int]) -> list[dict]:
    """Records sorted by score, best first, numbered (`rank` from 1), cut to `top`."""
    out = sorted(records, key=lambda r: -r["score"])[: top or None]
    for i, r in enumerate(out):
        r["rank"] = i + 1
    return out


def classify(images: Sequence[str | Path], labels: Sequence[str], templates: Optional[Sequence[str]] = None,
             clips: ClipChoice = ClipChoice(), batch_size: int = 32, top: Optional[int] = None,
             progress: bool = False) -> list[dict]:
    """Zero-shot classification of image files (folders stand for their images) among `labels`, the CLIPs' label
    probabilities averaged: per image {image, label (the likeliest), probs {label: p}, top [[label, p], ...]}.
    `templates` ('a photo of a {}.'; default: the preset CLIP's own, else six usual ones) are averaged per label."""
    labels = list(labels)
    if len(labels) < 2:
        raise VqclipError(f"classify needs at least two labels, got {len(labels)}")
    paths = expand_image_args(images)  # a missing file fails before any notice
    if templates is None and preset_templates(clips):
        templates = preset_templates(clips)
        log.info("the '%s' CLIP knows only its own caption grammar: labels are used as written, e.g. 'a red circle' "
                 "(--templates '%s')", clips.model, ";".join(templates))
    templates = check_templates(DEFAULT_TEMPLATES if templates is None else templates)
    models = load_clips(clips)
    kept, embs = embed_files(models, paths, batch_size, progress)
    probs = averaged(models, embs, lambda clip, emb: classify_embeddings(
        emb, text_classifier(clip, labels, templates).cpu(), logit_scale(clip)))
    k = min(top or len(labels), len(labels))
    results = []
    for path, row in zip(kept, probs.tolist()):
        order = sorted(range(len(labels)), key=lambda j: -row[j])[:k]
        results.append({"image": str(path), "label": labels[order[0]], "probs": dict(zip(labels, row)),
                        "top": [[labels[j], row[j]] for j in order]})
    return results


def score_images(images: Sequence[str | Path], prompt: str, clips: ClipChoice = ClipChoice(), batch_size: int = 32,
                 top: Optional[int] = None, progress: bool = False) -> list[dict]:
    """CLIP similarity of image files to a prompt ('a:1|b:-0.5' weighs its parts), averaged over the CLIPs, best
    first: [{image, score, rank}]."""
    parse_score_prompt(prompt)  # a malformed prompt fails before any model is loaded
    paths = expand_image_args(images)
    models = load_clips(clips)
    kept, embs = embed_files(models, paths, batch_size, progress)
    scores = averaged(models, embs, lambda clip, emb: prompt_scores(clip, emb, [prompt] * len(kept)))
    return ranked([{"image": str(p), "score": float(s)} for p, s in zip(kept, scores)], top)


def read_run_prompt(path: Path) -> Optional[str]:
    """The text prompt a vqclip run recorded in its PNG (`vqclip` text chunk, JSON with 'prompt'), or None."""
    try:
        prompt = read_png_json(path).get("prompt")
    except VqclipError as exc:
        log.warning("skipping %s", exc)
        return None
    if not isinstance(prompt, str) or not prompt.strip():
        log.warning("skipping %s: no vqclip run metadata with a text prompt", path)
        return None
    try:
        parse_score_prompt(prompt)
    except VqclipError as exc:
        log.warning("skipping %s: %s", path, exc)
        return None
    return prompt


def rank_runs(folder: str | Path, clips: ClipChoice = ClipChoice(), batch_size: int = 32, top: Optional[int] = None,
              progress: bool = False) -> list[dict]:
    """The runs under a folder ranked by how well each final.png matches the prompt recorded in it, best first:
    [{run, image, prompt, score, rank}]; when every run was judged by the same held-out judge (scores.json), by its
    score of the final image (each record then says `by` which judge), else by `clips`."""
    finals = [p for p in scan_images(folder) if p.name == RANK_IMAGE]
    if not finals:
        raise VqclipError(f"{folder}: no runs found (no {RANK_IMAGE} below it); give an outputs folder")
    runs: dict[Path, str] = {}
    for path in finals:
        prompt = read_run_prompt(path)
        if prompt is not None:
            runs[path] = prompt
    if not runs:
        raise VqclipError(f"{folder}: none of the {len(finals)} runs has a readable prompt in its {RANK_IMAGE}")
    judged = judge_scores(list(runs))
    if judged is not None:  # every run scored by the same held-out judge: its score of each final image
        return ranked([{"run": str(p.parent), "image": str(p), "prompt": runs[p], "score": s, "by": by}
                       for p, (s, by) in judged.items()], top)
    models = load_clips(clips)
    kept, embs = embed_files(models, list(runs), batch_size, progress)
    scores = averaged(models, embs, lambda clip, emb: prompt_scores(clip, emb, [runs[p] for p in kept]))
    return ranked([{"run": str(p.parent), "image": str(p), "prompt": runs[p], "score": float(s)}
                   for p, s in zip(kept, scores)], top)


def judge_scores(finals: list[Path]) -> Optional[dict[Path, tuple[float, str]]]:
    """{final.png: (its judge's score, the judge)} when every run was judged (scores.json) by the same judge; None
    otherwise (scores of different judges, or of a judge and a CLIP, do not compare), with a notice when some were."""
    found = {p: read_scores(p.parent) for p in finals}
    scored = {p: (final_score(d), d["judge"]["model"]) for p, d in found.items() if final_score(d) is not None}
    if scored and len(scored) == len(finals) and len({by for _, by in scored.values()}) == 1:
        return scored
    if scored:
        log.info("%d of %d runs have judge scores (scores.json) from %s: ranking all by CLIP instead", len(scored),
                 len(finals), ", ".join(sorted({by for _, by in scored.values()})))
    return None


def search(folder: str | Path, query: Optional[str] = None, image: Optional[str | Path] = None,
           clips: ClipChoice = ClipChoice(), top: int = 10, rebuild: bool = False, batch_size: int = 32,
           progress: bool = False) -> dict:
    """The images under a folder ranked by similarity to a text `query` or a query `image` (one of them), averaged
    over the CLIPs, each with its cached index: {query, folder, indexed, embedded, skipped, results [{rank, path,
    score}]}. The folder and the query image are checked before any model loads."""
    folder = Path(folder)
    if (query is None) == (image is None):
        raise VqclipError("search needs exactly one query: a text (vqclip search FOLDER 'a red car') or --image FILE")
    if query is not None and not query.strip():
        raise VqclipError("search: the query text is empty; give a text (vqclip search FOLDER 'a red car') or --image")
    if image is not None and not Path(image).is_file():
        raise VqclipError(f"{image}: no such query image")
    if not folder.is_dir():  # both checked before any model loads or any image is embedded
        why = "is a file, not a folder" if folder.exists() else "no such folder"
        raise VqclipError(f"{folder}: {why}; give a folder of images")
    if image is not None:
        try:
            load_image_file(image, 8)
        except Exception as exc:  # PIL raises anything from OSError to DecompressionBombError on a bad file
            raise VqclipError(f"{image}: the query image cannot be read ({reason(exc)})") from None
    indexes, queries = [], []
    for clip in load_clips(clips):  # one cached index per CLIP, in the same file
        index = ImageIndex(folder, clip)
        if rebuild:
            index.entries.clear()
            index.vectors.clear()
        t0 = time.perf_counter()
        index.update(batch_size=batch_size, progress=progress)
        wall = time.perf_counter() - t0
        if not len(index):
            skipped = f" ({len(index.skipped)} could not be read)" if index.skipped else ""
            raise VqclipError(f"{folder}: no readable images under it{skipped}; give a folder that holds "
                              f"{', '.join(sorted(s.lstrip('.') for s in IMAGE_SUFFIXES))} files")
        if index.embedded:
            log.info("indexed %d images: %d embedded in %.1fs (%.1f images/s), %d from the cache, %d skipped",
                     len(index), index.embedded, wall, index.embedded / max(wall, 1e-9),
                     len(index) - index.embedded, len(index.skipped))
        if image is not None:
            kept, emb = embed_image_files(clip, [image], 1)
            if not kept:
                raise VqclipError(f"{image}: the query image cannot be read")
            queries.append(emb[0])
        else:
            queries.append(clip.encode_text([query])[0].cpu())
        indexes.append(index)
    hits = search_all(indexes, queries, top)
    return {"query": f"image:{image}" if image is not None else query, "folder": str(folder),
            "indexed": len(indexes[0]), "embedded": sum(i.embedded for i in indexes), "skipped": indexes[0].skipped,
            "results": [{"rank": i + 1, "path": str(p), "score": s} for i, (p, s) in enumerate(hits)]}
