"""Training data a user can trust: image-caption pairs from a folder (`image.txt` beside each image), a CSV or a JSONL
(column names as open_clip's csv loader takes them), unreadable or tiny images skipped with a count, a seeded
train/validation split recorded in the run folder, and a seeded order per epoch that a resumed run replays."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vqclip.errors import VqclipError
from vqclip.files.atomic import write_text

log = logging.getLogger("vqclip")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MIN_SIDE = 16  # pixels: a smaller image is skipped as tiny (an icon, a tracking pixel), not upscaled into noise
SPLIT_FILE, OPTIONS_FILE = "split.json", "train.json"  # in the run folder: the split, the options
SHOWN_FILES = 3  # files named in a "captions missing" error


@dataclass(frozen=True)
class Pair:
    """One training example: an image file and its caption."""

    image: Path
    caption: str


def _caption_beside(image: Path) -> Optional[str]:
    """The caption in `image.txt` beside an image (its lines joined by single spaces), None when absent or empty."""
    txt = image.with_suffix(".txt")
    if not txt.is_file():
        return None
    text = " ".join(txt.read_text(encoding="utf-8", errors="replace").split())
    return text or None


def _from_folder(folder: Path) -> list[Pair]:
    """Pairs of a folder's images (recursively, sorted) with the captions beside them; errors for an empty folder, a
    folder without images, and images without captions (naming the first few)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise VqclipError(f"--data {folder}: the folder is empty; put images there, each with its caption in a .txt "
                          "file of the same name (cat.png + cat.txt)")
    if not images:
        raise VqclipError(f"--data {folder}: none of its {len(files)} files is an image "
                          f"({', '.join(sorted(IMAGE_SUFFIXES))}); give a folder of images with captions")
    captions = [(p, _caption_beside(p)) for p in images]
    lacking = [p for p, c in captions if c is None]
    if lacking:
        named = ", ".join(str(p.relative_to(folder)) for p in lacking[:SHOWN_FILES])
        more = f" and {len(lacking) - SHOWN_FILES} more" if len(lacking) > SHOWN_FILES else ""
        raise VqclipError(f"--data {folder}: {len(lacking)} of {len(images)} images have no caption ({named}{more}); "
                          "write each caption in a .txt file beside its image (cat.png + cat.txt)")
    return [Pair(p, c) for p, c in captions]


def _rows(path: Path) -> tuple[list[dict], list[str]]:
    """(rows, column names) of a CSV (header line) or a JSONL file (one object per line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VqclipError(f"--data {path}: cannot read it ({exc.__class__.__name__}); give a UTF-8 text file") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        return list(reader), list(reader.fieldnames or [])
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            raise VqclipError(f"--data {path}: line {n} is not a JSON object; write one {{...}} per line")
        rows.append(row)
    return rows, list(dict.fromkeys(k for r in rows for k in r))


def _from_table(path: Path, img_key: str, caption_key: str) -> list[Pair]:
    """Pairs of a CSV or JSONL listing image paths (relative to the file's folder) and captions."""
    rows, columns = _rows(path)
    if not rows:
        raise VqclipError(f"--data {path}: no rows; give one image path and caption per row")
    for key, flag in ((img_key, "--image-key"), (caption_key, "--caption-key")):
        if key not in columns:
            raise VqclipError(f"--data {path}: no column '{key}' (columns: {', '.join(columns) or 'none'}); name "
                              f"the right one with {flag}")
    pairs, lacking = [], []
    for n, row in enumerate(rows, 1):
        image, text = row.get(img_key), row.get(caption_key)
        text = " ".join(str(text).split()) if text is not None else ""
        if not text:
            lacking.append(f"row {n} ({image})")
            continue
        pairs.append(Pair(path.parent / str(image), text))
    if lacking:
        more = f" and {len(lacking) - SHOWN_FILES} more" if len(lacking) > SHOWN_FILES else ""
        raise VqclipError(f"--data {path}: {len(lacking)} rows have no caption ({', '.join(lacking[:SHOWN_FILES])}"
                          f"{more}); fill in the '{caption_key}' column")
    return pairs


def usable(image: Path, min_side: int = MIN_SIDE) -> Optional[str]:
    """Why an image cannot be trained on ('unreadable' or 'tiny'), None when it can."""
    try:
        with Image.open(image) as im:
            im.load()
            w, h = im.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError):
        return "unreadable"
    return "tiny" if min(w, h) < min_side else None


def read_pairs(data: Path, img_key: str = "filepath", caption_key: str = "caption",
               min_side: int = MIN_SIDE) -> list[Pair]:
    """The usable image-caption pairs of a folder, CSV or JSONL; the skipped ones are counted in the log."""
    data = Path(data)
    if data.is_dir():
        pairs = _from_folder(data)
    elif data.is_file() and data.suffix.lower() in (".csv", ".jsonl"):
        pairs = _from_table(data, img_key, caption_key)
    elif data.is_file():
        raise VqclipError(f"--data {data}: give a folder of images, a .csv or a .jsonl file")
    else:
        raise VqclipError(f"--data {data}: no such folder or file")
    why = [usable(p.image, min_side) for p in pairs]
    kept = [p for p, w in zip(pairs, why) if w is None]
    bad, tiny = why.count("unreadable"), why.count("tiny")
    if bad or tiny:
        log.info("skipped %d of %d images: %d unreadable, %d tiny (a side under %d px)", bad + tiny, len(pairs), bad,
                 tiny, min_side)
    if not kept:
        raise VqclipError(f"--data {data}: none of its {len(pairs)} images is readable and at least {min_side} px a "
                          "side; check the files")
    return kept


def split(n: int, val: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices of n examples: a seeded shuffle, the first round(n * val) held out (at least one
    when val > 0 and n > 1, never all)."""
    if not 0.0 <= val < 1.0:
        raise VqclipError(f"--val: the held-out share must be at least 0 and under 1, got {val}")
    order = np.random.default_rng(seed).permutation(n).tolist()
    k = min(max(round(n * val), 1 if val > 0 and n > 1 else 0), n - 1)
    return sorted(order[k:]), sorted(order[:k])


def write_split(run: Path, pairs: Sequence[Pair], train: Sequence[int], val: Sequence[int]) -> Path:
    """Record the split in RUN/split.json (absolute image paths and captions of each part), so that the run can be
    resumed from any folder and the held-out images named."""
    rec = lambda ids: [{"image": str(pairs[i].image.absolute()), "caption": pairs[i].caption}  # noqa: E731
                       for i in ids]
    return write_text(run / SPLIT_FILE, json.dumps({"train": rec(train), "val": rec(val)}, indent=1) + "\n")


def check_fresh(run: Path, checkpoint: str) -> None:
    """--out must not hold a run that checkpointed (a folder whose run stopped before its first checkpoint starts
    afresh): a one-line error naming --resume otherwise."""
    if (run / checkpoint).exists():
        raise VqclipError(f"--out {run}: already holds a training run; continue it with --resume {run}, or give "
                          "another --out")


def start_run(run: Path, options: dict, train: Sequence[Pair], val: Sequence[Pair], noun: str) -> None:
    """A new run folder: RUN/split.json (train first, then held out) and RUN/train.json (the options, read back by
    --resume), said in one log line counting the `noun`s ("pairs", "images") of each part."""
    run.mkdir(parents=True, exist_ok=True)
    write_split(run, [*train, *val], range(len(train)), range(len(train), len(train) + len(val)))
    write_text(run / OPTIONS_FILE, json.dumps(options, indent=1) + "\n")
    log.info("training on %d %s, %d held out; run folder %s", len(train), noun, len(val), run)


def read_split(run: Path) -> tuple[list[Pair], list[Pair]]:
    """(train, validation) pairs recorded in RUN/split.json."""
    try:
        data = json.loads((run / SPLIT_FILE).read_text(encoding="utf-8"))
        return tuple([Pair(Path(r["image"]), r["caption"]) for r in data[k]] for k in ("train", "val"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VqclipError(f"{run / SPLIT_FILE}: cannot read the run's split ({exc.__class__.__name__}); is {run} a "
                          "training run folder?") from None


def check_batch(batch: int, n_train: int) -> None:
    """A batch must fit in the training part: a one-line error otherwise (the contrastive loss needs a full batch)."""
    if batch < 2:
        raise VqclipError(f"--batch: a contrastive batch needs at least 2 pairs, got {batch}")
    if batch > n_train:
        raise VqclipError(f"--batch {batch} is larger than the {n_train} training pairs; give --batch {n_train} or "
                          "less, or more data")


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The order of the n training pairs in one epoch: a fixed function of (seed, epoch), so a resumed run replays it."""
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


def batch_indices(n: int, batch: int, seed: int, step: int) -> list[int]:
    """The training pairs of optimiser step `step` (from 0): full batches through each epoch's order (the last short
    batch of an epoch is dropped, as open_clip's loader does)."""
    per_epoch = n // batch
    epoch, k = divmod(step, per_epoch)
    return epoch_order(n, seed, epoch)[k * batch:(k + 1) * batch]


def image_seeds(seed: int, step: int, batch: int) -> list[int]:
    """The augmentation seed of each image of step `step`'s batch: one per (seed, step, place in the global batch), so
    a resumed run and any number of processes draw the same crops as one unbroken process."""
    return [(seed * 1_000_003 + step * batch + j) % 2**63 for j in range(batch)]


def load_images(pairs: Sequence[Pair], transform: Callable, seeds: Optional[Sequence[int]] = None) -> torch.Tensor:
    """The pairs' images as one batch [B,3,S,S]: each opened as RGB and put through `transform` (open_clip's), its
    random draws (if any) seeded by `seeds` (one per image; torch's global RNG left as it was)."""
    out = []
    for i, p in enumerate(pairs):
        with Image.open(p.image) as im, torch.random.fork_rng(devices=[]):
            if seeds is not None:
                torch.manual_seed(seeds[i])
            out.append(transform(im.convert("RGB")))
    return torch.stack(out)


def read_images(data: Path, min_side: int = MIN_SIDE) -> list[Pair]:
    """The usable images of a folder (recursively, sorted) as captionless pairs, for an image-only training (a VQGAN);
    the skipped ones counted in the log; errors for an empty folder, a folder without images or without usable ones."""
    data = Path(data)
    if not data.is_dir():
        raise VqclipError(f"--data {data}: {'not a folder' if data.exists() else 'no such folder'}; give a folder of "
                          "images")
    files = sorted(p for p in data.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise VqclipError(f"--data {data}: the folder is empty; put the images to train on there")
    if not images:
        raise VqclipError(f"--data {data}: none of its {len(files)} files is an image "
                          f"({', '.join(sorted(IMAGE_SUFFIXES))}); give a folder of images")
    why = [usable(p, min_side) for p in images]
    kept = [Pair(p, "") for p, w in zip(images, why) if w is None]
    unreadable, small = why.count("unreadable"), why.count("tiny")
    if unreadable or small:
        log.info("skipped %d of %d images: %d unreadable, %d tiny (a side under %d px)", unreadable + small,
                 len(images), unreadable, small, min_side)
    if not kept:  # every image unusable
        raise VqclipError(f"--data {data}: none of its {len(images)} images is readable and at least {min_side} px a "
                          "side; check the files")
    return kept
