"""CLIP's other jobs on the loaded model: zero-shot classification, image-text scores, and embedding image files."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import VqclipError, reason
from ..nets.clip import ClipModel
from ..optim.prompts import parse_prompts

log = logging.getLogger("vqclip")

#: prompt templates averaged per label (a short subset of the ones CLIP's authors used for ImageNet)
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a close-up photo of a {}.",
    "a rendering of a {}.",
    "art of a {}.",
)
#: file suffixes treated as images when scanning folders
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MAX_LOGIT_SCALE = 100.0


def check_templates(templates: Sequence[str]) -> list[str]:
    """Templates as a list, each with exactly one `{}` slot for the label; VqclipError otherwise."""
    out = [t for t in templates]
    if not out:
        raise VqclipError("no prompt templates: give at least one, e.g. 'a photo of a {}.' or just '{}'")
    for t in out:
        if not isinstance(t, str) or t.count("{}") != 1 or t.replace("{}", "").count("{") or t.count("}") != 1:
            raise VqclipError(f"template {t!r} needs exactly one '{{}}' where the label goes (and no other braces)")
    return out


def text_classifier(clip: ClipModel, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> Tensor:
    """One unit vector per label [L,D]: the renormalised mean of the label's embeddings under every template."""
    labels = [str(label).strip() for label in labels]
    if not labels or any(not label for label in labels):
        raise VqclipError("labels must be non-empty, e.g. --labels 'cat,dog,human'")
    if len(set(labels)) != len(labels):
        raise VqclipError(f"labels repeat: {', '.join(sorted({x for x in labels if labels.count(x) > 1}))}")
    templates = check_templates(templates)
    with torch.inference_mode():
        texts = [t.format(label) for label in labels for t in templates]
        emb = clip.encode_text(texts).view(len(labels), len(templates), -1).mean(1)
        return torch.nn.functional.normalize(emb, dim=-1)


def logit_scale(clip: ClipModel) -> float:
    """CLIP's learned softmax temperature (exp of `logit_scale`, capped at 100 as in training); 100 if absent."""
    scale = getattr(clip.model, "logit_scale", None)
    if scale is None:
        return MAX_LOGIT_SCALE
    return float(min(float(torch.as_tensor(scale).float().exp()), MAX_LOGIT_SCALE))


def classify_embeddings(image_emb: Tensor, classes: Tensor, scale: float) -> Tensor:
    """Label probabilities [B,L] in [0,1] (rows sum to 1) from unit image [B,D] and label [L,D] embeddings."""
    logits = scale * image_emb.float() @ classes.float().to(image_emb.device).t()
    return logits.softmax(dim=-1)


def encode_images(clip: ClipModel, images: Tensor) -> Tensor:
    """Images [B,3,H,W] in [0,1], any size -> unit embeddings [B,D], prepared by open_clip's eval transform of the
    model (its resize mode and interpolation)."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise VqclipError(f"images must be a [B,3,H,W] tensor in [0,1], got {getattr(images, 'shape', type(images))}")
    with torch.inference_mode():
        return clip.embed_images(images.to(clip.mean.device, torch.float32))


def zero_shot(clip: ClipModel, images: Tensor, labels: Sequence[str],
              templates: Sequence[str] = DEFAULT_TEMPLATES) -> Tensor:
    """Zero-shot label probabilities [B,L] for images [B,3,H,W] in [0,1]; columns follow `labels`."""
    return classify_embeddings(encode_images(clip, images), text_classifier(clip, labels, templates), logit_scale(clip))


def score_embeddings(image_emb: Tensor, text_emb: Tensor) -> Tensor:
    """Cosine similarity [B] in [-1,1] of each image [B,D] with its text [B,D] (or one text [1,D] for all)."""
    return (image_emb.float() * text_emb.float().to(image_emb.device)).sum(-1)


def score(clip: ClipModel, images: Tensor, texts: str | Sequence[str]) -> Tensor:
    """CLIP similarity [B] in [-1,1] of images [B,3,H,W] in [0,1] with one text, or with one text per image."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if len(texts) not in (1, images.shape[0]):
        raise VqclipError(f"score needs one text or one per image: got {len(texts)} texts for {images.shape[0]} images")
    with torch.inference_mode():
        return score_embeddings(encode_images(clip, images), clip.encode_text(texts))


def encode_texts(clip: ClipModel, texts: Sequence[str], batch_size: int = 256) -> Tensor:
    """Unit text embeddings [N,D], computed once per distinct text."""
    unique = list(dict.fromkeys(texts))
    with torch.inference_mode():
        emb = torch.cat([clip.encode_text(unique[i:i + batch_size]) for i in range(0, len(unique), batch_size)])
    where = {t: i for i, t in enumerate(unique)}
    return emb[[where[t] for t in texts]]


def parse_score_prompt(spec: str) -> list:
    """A generate-style prompt ('a:1|b:-0.5') as `Prompt` parts, checked to have a positive part to score against."""
    parts = parse_prompts(spec) if isinstance(spec, str) else None
    if not parts or not any(p.weight > 0 for p in parts):
        raise VqclipError(f"prompt {spec!r} has no text with a positive weight to score against")
    return parts


def prompt_scores(clip: ClipModel, image_emb: Tensor, prompts: Sequence[str]) -> Tensor:
    """Score [B] of unit image embeddings [B,D] against generate-style prompts ('a:1|b:-0.5'), one per image.

    Each prompt scores sum(w_i * cos_i) / sum(positive w_i) over its parts: a plain text gives its cosine in [-1,1]."""
    parsed = [parse_score_prompt(p) for p in prompts]
    texts = [p.text for parts in parsed for p in parts]
    sims = score_embeddings(image_emb.repeat_interleave(torch.tensor([len(x) for x in parsed]), dim=0),
                            encode_texts(clip, texts))
    out, i = [], 0
    for parts in parsed:
        w = torch.tensor([p.weight for p in parts])
        out.append(float((w * sims[i:i + len(parts)]).sum() / w.clamp(min=0).sum()))
        i += len(parts)
    return torch.tensor(out)


# ---- image files ------------------------------------------------------------------------------------------------

def load_image_file(path: str | Path, size: int):
    """An image file as an RGB PIL image, EXIF orientation applied; a JPEG is decoded at a reduced scale that keeps
    its short side >= `size` (the later resize to `size` is what open_clip would do). Raises on a bad file."""
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is a bad file, not a warning
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale (never below `size`)
            im = ImageOps.exif_transpose(im).convert("RGB")
            if min(im.size) < 1:
                raise ValueError("empty image")
            return im


def _try_load(path: Path, clip: ClipModel) -> Tensor | None:
    """The file prepared for `clip` by open_clip's eval transform ([3,S,S], normalised), or None with a one-line
    warning when the file cannot be read as an image."""
    try:
        return clip.transform(load_image_file(path, clip.image_size))
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError, ...
        log.warning("skipping %s: not a readable image (%s)", path, reason(exc, 160, whole=True))
        return None


def _progress(total: int, enabled: bool, desc: str):
    """A tqdm bar on stderr when enabled and stderr is a terminal (a no-op object otherwise, so logs stay clean)."""
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None if enabled else True, leave=False,
                dynamic_ncols=True)


def iter_image_embeddings(clip: ClipModel, paths: Iterable[str | Path], batch_size: int = 32,
                          progress: bool = False, desc: str = "embedding") -> Iterator[tuple[list[Path], Tensor]]:
    """Embed image files in batches: yields (readable paths, unit embeddings [b,D] on CPU); bad files are skipped.

    Files are decoded by a small thread pool one batch ahead of the model, so decoding overlaps inference."""
    if batch_size < 1:
        raise VqclipError(f"batch size must be >= 1, got {batch_size}")
    paths = [Path(p) for p in paths]
    workers = max(1, min(4, os.cpu_count() or 1))
    batches = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max_workers=workers) as pool, _progress(len(paths), progress, desc) as bar:
        submit = lambda chunk: [pool.submit(_try_load, p, clip) for p in chunk]  # noqa: E731
        pending = submit(batches[0]) if batches else []
        for i, chunk in enumerate(batches):
            arrays = [f.result() for f in pending]
            pending = submit(batches[i + 1]) if i + 1 < len(batches) else []
            kept = [(p, a) for p, a in zip(chunk, arrays) if a is not None]
            bar.update(len(chunk))
            if not kept:
                continue
            x = torch.stack([a for _, a in kept]).to(clip.mean.device)
            with torch.inference_mode():
                emb = clip.encode_normalized(x).cpu()
            yield [p for p, _ in kept], emb


def embed_image_files(clip: ClipModel, paths: Iterable[str | Path], batch_size: int = 32,
                      progress: bool = False) -> tuple[list[Path], Tensor]:
    """(readable paths, unit embeddings [N,D] on CPU) for image files; unreadable ones are skipped with a warning."""
    kept: list[Path] = []
    parts: list[Tensor] = []
    for chunk, emb in iter_image_embeddings(clip, paths, batch_size, progress):
        kept += chunk
        parts.append(emb)
    if not parts:
        return kept, torch.empty(0, 0)
    return kept, torch.cat(parts)


def scan_images(folder: str | Path) -> list[Path]:
    """Image files under `folder`, recursively (hidden files and folders skipped), sorted by path."""
    root = Path(folder)
    if not root.is_dir():
        raise VqclipError(f"{root}: no such folder; give a folder of images")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def expand_image_args(items: Sequence[str | Path]) -> list[Path]:
    """Command-line image arguments as files: a folder stands for the images in it; a missing path is an error."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += scan_images(p)
        elif p.exists():
            out.append(p)
        else:
            raise VqclipError(f"{p}: no such file or folder")
    if not out:
        raise VqclipError("no images given: pass image files or folders that contain images")
    return out
