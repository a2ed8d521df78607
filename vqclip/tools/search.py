"""A per-folder cache of CLIP image embeddings, so repeated searches only embed new or changed files."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import platformdirs
import torch
from torch import Tensor

from .clipjobs import iter_image_embeddings, scan_images
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..errors import VqclipError, reason
from ..files.atomic import atomic_path
from ..models.presets import chosen_home, home
from ..nets.clip import ClipModel

log = logging.getLogger("vqclip")

INDEX_NAME = ".vqclip-index.safetensors"  # where earlier versions kept a folder's index: inside it (still read)
INDEX_DIR = "search"  # the indexes' folder in vqclip's cache
FORMAT = "vqclip-image-index/1"


def index_file(folder: str | Path) -> Path:
    """Where the index of `folder` lives: `<cache>/search/<name>-<hash of its absolute path>.safetensors`, the cache
    being $VQCLIP_HOME if set, else the per-user cache folder (~/.cache/vqclip), never the image folder itself."""
    folder = Path(folder).expanduser().resolve()
    cache = home() if chosen_home() else Path(platformdirs.user_cache_dir("vqclip", appauthor=False))
    key = hashlib.sha256(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.name)[:40] or "root"
    return cache.absolute() / INDEX_DIR / f"{name}-{key}.safetensors"


def clip_fingerprint(clip: ClipModel) -> str:
    """A key that changes with the CLIP's weights and preprocessing: readable name + hash of shapes and samples."""
    h = hashlib.sha256()
    pre = clip.preprocess_cfg  # open_clip's eval transform: embeddings made with another one are stale
    h.update(f"{clip.name}|{clip.image_size}|{list(pre.mean)}|{list(pre.std)}|{pre.interpolation}|{pre.resize_mode}|"
             f"{pre.fill_color}".encode())
    with torch.inference_mode():
        for name, t in clip.model.state_dict().items():
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            if t.numel():
                flat = t.detach().reshape(-1)
                step = max(1, flat.numel() // 64)
                sample = flat[::step][:64].float()
                total = flat.float().sum().reshape(1) if t.is_floating_point() else flat.sum().float().reshape(1)
                h.update(torch.cat([sample, total]).cpu().numpy().tobytes())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", clip.name)[:40] or "clip"
    return f"{slug}-{h.hexdigest()[:16]}"


@dataclass(frozen=True)
class Entry:
    """What an embedding was computed from: file size and modification time (ns)."""

    size: int
    mtime_ns: int


class ImageIndex:
    """Embeddings of the images under `folder` for one CLIP model, cached in vqclip's cache (`index_file`); an index
    an earlier version left in `<folder>/.vqclip-index.safetensors` is read until the new one is written.

    Entries are keyed by relative path and checked against (size, mtime_ns); the file holds one section per model
    (tensor `<model key>` [N,D] + JSON metadata). `embedded` counts images embedded by this object (for tests)."""

    def __init__(self, folder: str | Path, clip: ClipModel, index_path: str | Path | None = None,
                 model_key: str | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise VqclipError(f"{self.folder}: no such folder; give a folder of images")
        self.clip = clip
        self.path = Path(index_path) if index_path else index_file(self.folder)
        self.legacy = None if index_path else self.folder / INDEX_NAME
        self.key = model_key or clip_fingerprint(clip)
        self.entries: dict[str, Entry] = {}
        self.vectors: dict[str, Tensor] = {}
        self.embedded = 0
        self.skipped: list[str] = []
        self._unwritable = False
        self._load()

    # -- persistence --------------------------------------------------------------------------------------------

    def _read_file(self) -> tuple[dict[str, str], dict[str, Tensor]] | None:
        """(metadata, tensors) of the index file (or of the folder's own from an earlier version, until the index
        file exists), None if absent; raises ValueError if it is not a valid index."""
        path = self.path if self.path.exists() or self.legacy is None or not self.legacy.is_file() else self.legacy
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
            tensors = load_file(str(path))
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise ValueError(reason(exc, 120, whole=True)) from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
        for key, t in tensors.items():
            rows = self._parse_section(meta.get(key), t)
            if rows is None:
                raise ValueError(f"section {key} does not match its metadata")
        return meta, tensors

    @staticmethod
    def _parse_section(text: str | None, tensor: Tensor) -> list[tuple[str, Entry]] | None:
        """A section's (path, entry) rows if its metadata JSON agrees with its [N,D] finite float tensor, else None."""
        try:
            data = json.loads(text or "")
            rows = [(str(p), Entry(int(s), int(m))) for p, s, m in zip(data["paths"], data["size"], data["mtime_ns"],
                                                                      strict=True)]
        except (ValueError, KeyError, TypeError):
            return None
        ok = (tensor.ndim == 2 and tensor.shape[0] == len(rows) and tensor.is_floating_point()
              and bool(torch.isfinite(tensor).all()) and len({p for p, _ in rows}) == len(rows))
        return rows if ok else None

    def _load(self) -> None:
        """Fill the entries for this model from the file; a corrupt file is reported in one line and rebuilt."""
        try:
            found = self._read_file()
        except ValueError as why:
            log.warning("search index %s is corrupt (%s); rebuilding it", self.path, why)
            self._corrupt = True
            return
        self._corrupt = False
        if found is None or self.key not in found[1]:
            return
        meta, tensors = found
        rows = self._parse_section(meta[self.key], tensors[self.key])
        matrix = tensors[self.key].float()
        for i, (rel, entry) in enumerate(rows or []):
            self.entries[rel] = entry
            self.vectors[rel] = matrix[i]

    def save(self) -> None:
        """Write the index atomically, keeping other models' sections; warn (once) if it cannot be written."""
        if self._unwritable:
            return
        try:
            found = None if self._corrupt else self._read_file()
        except ValueError:
            found = None
        meta, tensors = found or ({}, {})
        meta = {k: v for k, v in meta.items() if k in tensors and k != self.key}
        tensors = {k: v for k, v in tensors.items() if k != self.key}
        names = sorted(self.entries)
        dim = next(iter(self.vectors.values())).shape[0] if self.vectors else 0
        tensors[self.key] = (torch.stack([self.vectors[n] for n in names]) if names else torch.zeros(0, dim)).contiguous()
        meta[self.key] = json.dumps({"model": self.clip.name, "paths": names,
                                     "size": [self.entries[n].size for n in names],
                                     "mtime_ns": [self.entries[n].mtime_ns for n in names]})
        meta["format"], meta["folder"] = FORMAT, str(self.folder.resolve())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path) as tmp:
                save_file(tensors, str(tmp), metadata=meta)
            self._corrupt = False
        except OSError as exc:
            self._unwritable = True  # warn once, not at every periodic save
            log.warning("could not write the search index %s (%s); results are not cached", self.path,
                        exc.strerror or exc)

    # -- indexing and search ------------------------------------------------------------------------------------

    def update(self, batch_size: int = 32, progress: bool = False, save_every: int = 1024) -> int:
        """Embed new and changed images, drop vanished ones, save (also every `save_every` images and on interrupt).

        Returns how many images were embedded; unreadable files are skipped with a warning and listed in `skipped`."""
        current: dict[str, Entry] = {}
        for p in scan_images(self.folder):
            try:
                st = p.stat()
            except OSError:
                continue
            current[p.relative_to(self.folder).as_posix()] = Entry(st.st_size, st.st_mtime_ns)
        stale = [rel for rel in self.entries if current.get(rel) != self.entries[rel]]
        for rel in stale:
            del self.entries[rel], self.vectors[rel]
        todo = [rel for rel in current if rel not in self.entries]
        dirty = bool(stale) or self._corrupt or not self.path.exists()
        self.skipped = []
        done = since_save = 0
        try:
            for paths, emb in iter_image_embeddings(self.clip, [self.folder / r for r in todo], batch_size, progress,
                                                    desc="indexing"):
                for p, vec in zip(paths, emb):
                    rel = p.relative_to(self.folder).as_posix()
                    self.entries[rel], self.vectors[rel] = current[rel], vec.clone()
                done += len(paths)
                since_save += len(paths)
                self.embedded += len(paths)
                dirty = True
                if since_save >= save_every:
                    self.save()
                    since_save, dirty = 0, False
        finally:
            if dirty:
                self.save()
        self.skipped = [rel for rel in todo if rel not in self.entries]
        return done

    def __len__(self) -> int:
        return len(self.entries)

    def matrix(self) -> tuple[list[Path], Tensor]:
        """(absolute paths, unit embeddings [N,D]) of every indexed image, sorted by path."""
        names = sorted(self.entries)
        if not names:
            return [], torch.zeros(0, 0)
        return [self.folder / n for n in names], torch.stack([self.vectors[n] for n in names])

    def search(self, query: Tensor, top_k: int = 10) -> list[tuple[Path, float]]:
        """The `top_k` images most similar to a unit query embedding [D] (or [1,D]): (path, cosine) best first."""
        return search_all([self], [query], top_k)


def search_all(indexes: Sequence[ImageIndex], queries: Sequence[Tensor], top_k: int = 10) -> list[tuple[Path, float]]:
    """The `top_k` images by cosine with the query, averaged over several CLIPs (index i scored against query i),
    among the images every index holds; best first, ties in path order."""
    sims: dict[Path, list[float]] = {}
    for index, query in zip(indexes, queries, strict=True):
        paths, mat = index.matrix()
        for path, sim in zip(paths, (mat @ query.reshape(-1).float().cpu()).tolist() if paths else []):
            sims.setdefault(path, []).append(sim)
    scored = sorted(((p, sum(v) / len(v)) for p, v in sims.items() if len(v) == len(indexes)),
                    key=lambda item: (-item[1], str(item[0])))
    return scored[:max(0, top_k)]
