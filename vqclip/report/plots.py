"""The report's plots, drawn with matplotlib (the `report` extra), imported only inside the functions that draw: the
loss per term over the steps with the story keyframes and steers marked, and the judge's score per saved frame
beside the guide's. Each is written as a PNG, atomically."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

from ..errors import VqclipError
from ..files.atomic import atomic_path

WIDTH, HEIGHT, DPI = 8.0, 3.6, 90  # inches and dots per inch: 720x324 pixels, small enough to inline
MARGINS = (0.09, 0.14, 0.9, 0.9)  # left, bottom, right, top: room for the labels of both axes (no tight_layout: slow)


class MissingPlotting(VqclipError):
    """matplotlib is not installed: no plots and no report.html (the run itself is not affected)."""


def check_plotting() -> None:
    """A one-line error naming the extra to install when matplotlib is not there."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingPlotting("no report.html: its plots need matplotlib; pip install 'vqclip[report]', then "
                              "`vqclip report RUN` makes it")


def _save(fig, path: Path) -> Path:
    """The figure as PNG at `path` (atomic), without matplotlib's Software chunk (no URL in the file)."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return Path(path)


def loss_plot(terms: list[str], rows: list[dict[str, float]], markers: list[tuple[int, str]], path: Path) -> Path:
    """`loss_figure` written to `path` as PNG."""
    return _save(loss_figure(terms, rows, markers), path)


def loss_figure(terms: list[str], rows: list[dict[str, float]], markers: list[tuple[int, str]]):
    """The loss per step: the total and each term (rows {"step", "total", term...}), with a dashed line and a label at
    each marker (step, label): story keyframes and steers."""
    from matplotlib.figure import Figure  # here: matplotlib is an extra, and only drawing needs it

    fig = Figure(figsize=(WIDTH, HEIGHT))
    fig.subplots_adjust(*MARGINS)
    ax = fig.add_subplot()
    for name in ["total", *terms]:
        points = [(r["step"], r[name]) for r in rows if name in r]
        if points:
            ax.plot(*zip(*points), label=name, linewidth=2.0 if name == "total" else 1.2)
    top = ax.get_ylim()[1]
    for step, label in markers:
        ax.axvline(step, color="grey", linestyle="--", linewidth=0.8)
        ax.text(step, top, f" {label[:30]}", rotation=90, va="top", ha="left", fontsize=7, color="dimgrey")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (lower is better)")
    ax.set_title("loss per term")
    ax.legend(fontsize=7, loc="upper right")
    return fig


def score_plot(frames: list[dict], path: Path, best: Optional[int] = None) -> Path:
    """`score_figure` written to `path` as PNG."""
    return _save(score_figure(frames, best), path)


def score_figure(frames: list[dict], best: Optional[int] = None):
    """The judge's score (and its aesthetic score, where there is one) of each scored frame [{step, judge,
    aesthetic, guide}] on the left axis, the guide's own score on the right (their scales differ); `best`: the
    kept frame's step, marked."""
    from matplotlib.figure import Figure  # here: matplotlib is an extra, and only drawing needs it

    fig = Figure(figsize=(WIDTH, HEIGHT))
    fig.subplots_adjust(*MARGINS)
    ax = fig.add_subplot()
    steps = [f["step"] for f in frames]
    ax.plot(steps, [f["judge"] for f in frames], "o-", color="tab:blue", label="judge")
    aesthetic = [(f["step"], f["aesthetic"]) for f in frames if isinstance(f.get("aesthetic"), (int, float))]
    if aesthetic:
        ax.plot(*zip(*aesthetic), "^-", color="tab:green", label="aesthetic")
    ax.set_xlabel("step")
    ax.set_ylabel("held-out judge (higher is better)")
    guide = [(f["step"], f["guide"]) for f in frames if isinstance(f.get("guide"), (int, float))]
    handles, labels = ax.get_legend_handles_labels()
    if guide:
        right = ax.twinx()
        right.plot(*zip(*guide), "s--", color="tab:orange", label="guide")
        right.set_ylabel("guide's own score")
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if best is not None:
        ax.axvline(best, color="tab:red", linestyle=":", linewidth=1)
    ax.set_title("score per saved frame: the judge beside the guide")
    ax.legend(handles, labels, fontsize=7, loc="lower right")
    return fig
