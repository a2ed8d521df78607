"""batch.html: the runs of a `--n` batch or a sweep ranked by the held-out judge's score of their last scored frame
(scores.json), or, where a run has none, by the guide's final loss (losses.csv), saying so; with each sweep value's
mean. Self-contained as report.html is (images inlined, no script, no network reference)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import yaml

from ..errors import VqclipError
from ..files.atomic import write_text
from ..files.runfolder import FINAL_FILE
from .page import REPORT_FILE, esc, page, thumbnail
from .read import LOSSES_FILE, read_losses, read_scores

BATCH_FILE, BATCH_RECORD = "batch.html", "batch.yaml"  # batch.yaml: vqclip.runs.batch.RECORD
TILE = 96  # pixels: the longest side of a run's image in the table
ONE_IMAGE_KEYS = {"seed", "best"}  # the key of the images of one prompt: one run per value, no mean to show


def judge_score(folder: Path) -> Optional[float]:
    """The judge's score of a run's last scored frame (the image it ended with), or None without scores."""
    scores = read_scores(folder)
    return float(scores["frames"][-1]["judge"]) if scores and scores["frames"] else None


def final_loss(folder: Path) -> Optional[float]:
    """The guide's loss (the total of losses.csv) at the run's last recorded step, or None without one."""
    path = folder / LOSSES_FILE
    if not path.is_file():
        return None
    _, rows = read_losses(path)
    return rows[-1]["total"] if rows else None


def read_record(root: Path) -> dict:
    """batch.yaml of a batch folder; a one-line error when it is missing or not a batch's record."""
    path = root / BATCH_RECORD
    if not path.is_file():
        raise VqclipError(f"{root}: holds no {BATCH_RECORD}, so it is not a vqclip batch folder")
    try:
        record = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("runs"), list):
        raise VqclipError(f"{path}: not a batch record (no list of runs); it is written by `vqclip run` of a batch")
    return record


def rank_runs(root: Path, record: dict) -> tuple[list[dict], str]:
    """The batch's runs (those with a folder), best first, each {"folder", "values", "score"}, and what they are
    ranked by: the judge's score (higher is better) when every run has one, else the final loss (lower is better;
    runs with neither last)."""
    runs = []
    for entry in record["runs"]:
        name = entry.get("folder") if isinstance(entry, dict) else None
        if isinstance(name, str) and (root / name).is_dir():
            values = entry.get("values") if isinstance(entry.get("values"), dict) else {}
            runs.append({"folder": name, "values": values, "judge": judge_score(root / name),
                         "loss": final_loss(root / name)})
    if runs and all(r["judge"] is not None for r in runs):
        for r in runs:
            r["score"] = r["judge"]
        return sorted(runs, key=lambda r: -r["score"]), "the held-out judge's score of the last scored frame " \
                                                         "(higher is better)"
    for r in runs:
        r["score"] = r["loss"]
    lacking = sum(r["judge"] is None for r in runs)
    runs.sort(key=lambda r: (r["score"] is None, r["score"] if r["score"] is not None else 0.0))
    return runs, (f"the guide's final loss (lower is better): {lacking} of {len(runs)} runs have no judge scores "
                  "(run with output.judge)")


def value_means(runs: list[dict], keys: list[str]) -> dict[str, list[tuple[str, float, int]]]:
    """{key: [(value, mean score, runs), ...]} for each swept key (in the order the values first come), over the runs
    that have a score; a batch of one prompt's images (seed or best alone) has none."""
    if [k for k in keys if k not in ONE_IMAGE_KEYS] == []:
        return {}
    out = {}
    for key in keys:
        groups: dict[str, list[float]] = {}
        for r in runs:
            if key in r["values"] and r["score"] is not None:
                groups.setdefault(str(r["values"][key]), []).append(r["score"])
        out[key] = [(v, sum(s) / len(s), len(s)) for v, s in groups.items()]
    return out


def batch_html(root: Path, record: dict) -> str:
    """The batch's page: the ranking, each sweep value's mean, each run's image and a link to its report."""
    runs, by = rank_runs(root, record)
    keys = [str(k) for k in record.get("keys") or []]
    rows = []
    for i, r in enumerate(runs, 1):
        folder = root / r["folder"]
        image = f"<img alt=\"{esc(r['folder'])}\" src=\"{thumbnail(folder / FINAL_FILE, TILE)}\">" \
            if (folder / FINAL_FILE).is_file() else ""
        name = esc(r["folder"])
        if (folder / REPORT_FILE).is_file():
            name = f"<a href=\"{esc(r['folder'])}/{REPORT_FILE}\">{name}</a>"
        score = f"{r['score']:.5g}" if r["score"] is not None else "-"
        values = ", ".join(f"{esc(k)}={esc(v)}" for k, v in r["values"].items())
        rows.append(f"<tr><td>{i}</td><td>{image}</td><td>{name}</td><td>{values}</td><td>{score}</td></tr>")
    body = (f"<h1>{esc(root.name)}</h1><p id=\"ranked-by\">ranked by {esc(by)}</p><section id=\"ranking\">"
            "<h2>Ranking</h2><table><tr><th>#</th><th>image</th><th>run</th><th>values</th><th>score</th></tr>"
            + "".join(rows) + "</table></section>")
    means = value_means(runs, keys)
    if means:
        body += "<section id=\"means\"><h2>Mean per value</h2>"
        for key, groups in means.items():
            cells = "".join(f"<tr><td>{esc(v)}</td><td>{m:.5g}</td><td>{n}</td></tr>" for v, m, n in groups)
            body += f"<h3>{esc(key)}</h3><table><tr><th>value</th><th>mean</th><th>runs</th></tr>{cells}</table>"
        body += "</section>"
    return page(f"vqclip batch: {root.name}", body)


def write_batch_page(root: Path) -> Path:
    """Make (or make again) batch.html of the batch in `root` (its batch.yaml and runs' folders), atomically."""
    root = Path(root)
    return write_text(root / BATCH_FILE, batch_html(root, read_record(root)))
