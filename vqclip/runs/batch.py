"""Batches: the images of one prompt (`n`, seeds s, s+1, ...; or `candidates.keep` best starts of one batch) or a job
file's `sweep:`, each run into its own folder inside one batch folder, with a labelled grid.png of their final
images and batch.yaml listing them. Planning is torch-free (`vqclip run --dry-run` loads no models)."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

from ..config import GenerateConfig, check, check_inputs
from ..config.sweep import SWEEP, expand, folder_name, labels, short_keys
from ..errors import VqclipError
from ..files.atomic import write_text
from ..files.grid import contact_sheet, write_sheet
from ..files.scores import final_score, read_scores
from ..files.images import open_rgb
from ..files.runfolder import slug
from ..report.batchpage import write_batch_page
from .jobs import build_config

GRID, RECORD = "grid.png", "batch.yaml"


@dataclass
class Member:
    """One job of a batch: its folder's name in the batch folder, the values it differs in, and its config."""

    name: str
    values: dict[str, Any]
    cfg: GenerateConfig


@dataclass
class Batch:
    """The jobs of a batch, the keys they differ in (a sweep's, in order: rows, columns, one grid per value of the
    rest; `seed` or `best` for the images of one prompt, laid out as a square), and where the batch goes."""

    members: list[Member]
    keys: list[str]
    dir: Optional[str]  # None: outputs/<time>-<prompt>, chosen when the batch starts
    prompt: str
    wrap: bool = False  # the images of one prompt: a square of captioned tiles, not a table
    short: dict[str, str] = field(default_factory=dict)


def images_of(cfg: GenerateConfig) -> Optional[Batch]:
    """The batch of `n` images of a job (seeds s, s+1, ...: drawn and recorded when unset), or of its
    `candidates.keep` best starts of one batch (one seed, ranks 0, 1, ...); None for a single image."""
    count = max(cfg.n, cfg.candidates.keep)
    if count == 1:
        return None
    seed = int(cfg.seed) if cfg.seed is not None and cfg.seed != -1 else secrets.randbelow(2**31)  # as resolve_seed
    members = []
    for i in range(count):
        if cfg.candidates.keep > 1:
            one = replace(cfg, n=1, seed=seed, candidates=replace(cfg.candidates, keep=1, rank=i))
            values = {"best": i + 1}
        else:
            one = replace(cfg, n=1, seed=seed + i)
            values = {"seed": seed + i}
        check(one)  # a seed past the 64-bit range
        members.append(Member(folder_name(values, {k: k for k in values}), values, one))
    key = next(iter(members[0].values))
    return Batch(members, [key], cfg.output.dir, cfg.prompt, wrap=True, short={key: key})


def plan_job(job: dict, source: str, overrides: Optional[dict] = None, below: Sequence[tuple[str, dict]] = (),
             above: Sequence[tuple[str, dict]] = ()) -> GenerateConfig | Batch:
    """A job of a job file as one config, or the batch its `sweep:` or `n:` makes; every config built and checked
    (inputs included) before anything runs, with one-line errors naming the source and the job. `below`/`above`:
    config layers under and over the job (a Pipeline's preset and device)."""
    if SWEEP not in job:
        cfg = _checked(job, source, overrides, below, above)
        return images_of(cfg) or cfg
    expanded = expand(job, source)
    swept = list(job[SWEEP])
    short = short_keys(swept)
    members = []
    for values, layer in expanded:
        name = folder_name(values, short)
        cfg = _checked(layer, f"{source} {name}", overrides, below, above)
        if cfg.n > 1 or cfg.candidates.keep > 1:
            raise VqclipError(f"{source}: n and candidates.keep make a batch of their own and cannot be combined with "
                              "sweep; sweep over seed instead (sweep: {seed: [1, 2, 3]})")
        members.append(Member(name, values, cfg))
    seen = set()
    for m in members:  # values that slug alike (a-b, a b): numbered apart
        base, k = m.name, 1
        while m.name in seen:
            k += 1
            m.name = f"{base}-{k}"
        seen.add(m.name)
    prompt = job.get("prompt") if isinstance(job.get("prompt"), str) and "prompt" not in swept else ""
    return Batch(members, swept, members[0].cfg.output.dir, prompt or "sweep", short=short)


def _checked(layer: dict, source: str, overrides: Optional[dict], below: Sequence[tuple[str, dict]] = (),
             above: Sequence[tuple[str, dict]] = ()) -> GenerateConfig:
    try:
        cfg = build_config(overrides, base=[*below, (source, layer), *above])
        check_inputs(cfg)
    except VqclipError as exc:  # say which job of which file, unless the message already does
        raise exc if str(exc).startswith(source) else VqclipError(f"{source}: {exc}") from None
    return cfg


def describe(item: GenerateConfig | Batch) -> list[str]:
    """`vqclip run --dry-run`: one line per job, its run folder and the values it is run with."""
    if isinstance(item, GenerateConfig):
        return [f"{item.output.dir or 'outputs/<time>-<prompt>'}  prompt={item.prompt!r} seed={item.seed}"]
    root = item.dir or f"outputs/<time>-{slug(item.prompt)}"
    return [f"{root}/{m.name}  " + " ".join(f"{k}={v!r}" for k, v in m.values.items()) for m in item.members]


def sheets(batch: Batch) -> list[tuple[str, str, list[str], list[str], dict[tuple[int, int], int]]]:
    """The grids of a batch: (file name, title, row labels, column labels, {(row, col): member index}). A sweep of
    one key is one row; of two, rows by the first and columns by the second; more keys: one grid per value of the
    rest (grid-<values>.png). The images of one prompt: a square, captioned."""
    if batch.wrap:
        cols = math.ceil(math.sqrt(len(batch.members)))
        return [(GRID, "", [], [], {(i // cols, i % cols): i for i in range(len(batch.members))})]
    text = [labels(m.values, batch.short) for m in batch.members]
    row_key, col_key = (batch.keys[0], batch.keys[1]) if len(batch.keys) > 1 else (None, batch.keys[0])
    rest = batch.keys[2:]
    pages: dict[tuple, list[int]] = {}
    for i, t in enumerate(text):
        pages.setdefault(tuple(t[k] for k in rest), []).append(i)
    out = []
    for page, members in pages.items():
        rows = list(dict.fromkeys(text[i][row_key] for i in members)) if row_key else [""]
        cols = list(dict.fromkeys(text[i][col_key] for i in members))
        cells = {(rows.index(text[i][row_key]) if row_key else 0, cols.index(text[i][col_key])): i for i in members}
        name = GRID if not rest else "grid-" + folder_name({k: batch.members[members[0]].values[k] for k in rest},
                                                           batch.short) + ".png"
        out.append((name, ", ".join(page), rows if row_key else [], cols, cells))
    return out


def run_members(root: Path, batch: Batch, items: Sequence, run: Callable[[Any], Any]) -> list:
    """Run each of a batch's runs in turn with `run(item)` (an item per member, in order); stops after a run stopped
    early. The grids and batch.yaml are written for the runs made, also when one fails or is stopped."""
    runs: list = []
    try:
        for item in items:
            runs.append(run(item))
            if runs[-1].interrupted:
                break
    finally:
        if runs:
            write_grids(root, batch, runs)
    return runs


def write_grids(root: Path, batch: Batch, runs: list) -> list[Path]:
    """grid.png (or one per value of the third key on) of the runs made, batch.yaml listing every job, and batch.html
    ranking the runs made."""
    finals = {i: open_rgb(r.final) for i, r in enumerate(runs) if r.final.is_file()}
    judged = {i: final_score(read_scores(Path(r.final).parent)) for i, r in enumerate(runs) if r.final.is_file()}
    written = []
    for name, title, rows, cols, cells in sheets(batch):
        n_rows = 1 + max(r for r, _ in cells)
        n_cols = max(len(cols), 1 + max(c for _, c in cells))
        tiles = [[finals.get(cells[r, c]) if (r, c) in cells else None for c in range(n_cols)] for r in range(n_rows)]
        captions = {rc: batch.members[i].name for rc, i in cells.items()} if batch.wrap else None
        if any(v is not None for v in judged.values()):  # the judge's score of each final image under its tile
            captions = {rc: " ".join(filter(None, [(captions or {}).get(rc), judged.get(i) is not None and
                                                   f"judge {judged[i]:.3f}"])) for rc, i in cells.items()}
        sheet, _ = contact_sheet(tiles, rows or None, cols or None, captions, title)
        written.append(write_sheet(root / name, sheet))
    record = {"keys": batch.keys, "grids": [p.name for p in written], "runs": [
        {"folder": m.name, "values": m.values, "seed": (runs[i].config.seed if i < len(runs) else m.cfg.seed),
         "done": i < len(runs) and not runs[i].interrupted} for i, m in enumerate(batch.members)]}
    write_text(root / RECORD, yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    if batch.members[0].cfg.output.report:
        write_batch_page(root)  # batch.html: the runs ranked by the judge (or the final loss)
    return written
