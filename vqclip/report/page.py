"""report.html: one self-contained page per run (its images inlined as data: URIs, its style inline, no script, no
network reference: it opens offline, from a mail or a zip) with the loss per term, the judge's scores, a strip of
frames, the job and the speed; the plots also as report/loss.png and report/scores.png."""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path
from typing import Optional

from ..files.atomic import write_text
from ..files.images import open_rgb
from ..files.runfolder import FINAL_FILE
from .plots import MissingPlotting, check_plotting, loss_plot, score_plot
from .read import RunRecord, read_run

__all__ = ["MissingPlotting", "write_report", "REPORT_FILE", "PLOTS_DIR"]

log = logging.getLogger("vqclip")

REPORT_FILE, PLOTS_DIR = "report.html", "report"
LOSS_PNG, SCORES_PNG = "loss.png", "scores.png"
STRIP = 10  # frames in the strip at most: the first, the last and evenly between
THUMB, FINAL_SIDE = 128, 384  # pixels: the longest side of a strip frame and of the final image
STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:60em;color:#222}h1{font-size:1.3em}
h2{font-size:1.1em;border-bottom:1px solid #ccc;margin-top:1.5em}pre{background:#f6f6f6;padding:.6em;overflow:auto}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}
.strip{display:flex;flex-wrap:wrap;gap:.4em}.strip figure{margin:0;text-align:center;font-size:.8em}
.missing{color:#8a5a00}img.plot{max-width:100%}.strip img{width:96px;image-rendering:pixelated}
img.final{width:256px;image-rendering:pixelated}"""


def esc(text) -> str:
    """Text for the page, HTML-escaped; '://' written as an entity so no text (a URL in a prompt) reads as a link."""
    return html.escape(str(text)).replace("://", ":&#47;&#47;")


def data_uri(png: bytes) -> str:
    """PNG bytes as a data: URI (the page carries its images)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail(path: Path, side: int) -> str:
    """An image file shrunk to at most `side` pixels a side, as a PNG data: URI."""
    im = open_rgb(path)
    im.thumbnail((side, side))
    out = io.BytesIO()
    im.save(out, format="PNG")
    return data_uri(out.getvalue())


def page(title: str, body: str) -> str:
    """A whole HTML document with the inline style and no script."""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def strip_frames(frames: list, count: int = STRIP) -> list:
    """At most `count` of the frames: the first, the last and evenly spaced between (all when there are fewer)."""
    if len(frames) <= count:
        return list(frames)
    picks = sorted({round(i * (len(frames) - 1) / (count - 1)) for i in range(count)})
    return [frames[i] for i in picks]


def _loss_section(rec: RunRecord, plot: Optional[Path]) -> str:
    out = "<section id=\"loss\"><h2>Loss per term</h2>"
    if plot is None:
        return out + "<p class=\"missing\">no losses recorded: no loss plot</p></section>"
    out += f"<img class=\"plot\" alt=\"loss per term\" src=\"{data_uri(plot.read_bytes())}\">"
    last = rec.losses[-1]
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{last[k]:.5g}</td></tr>" for k in ["total", *rec.terms] if k in last)
    marks = "".join(f"<li>step {s}: {esc(label)}</li>" for s, label in rec.markers)
    return (out + f"<p>at step {last['step']}:</p><table>{cells}</table>"
            + (f"<p>marked:</p><ul>{marks}</ul>" if marks else "") + "</section>")


def _judge_section(rec: RunRecord, plot: Optional[Path]) -> str:
    out = "<section id=\"judge\"><h2>Judge</h2>"
    if plot is None:
        return out + "<p class=\"missing\">no judge scores: run with output.judge</p></section>"
    s = rec.scores
    judge = s.get("judge") if isinstance(s.get("judge"), dict) else {}
    out += (f"<p>held-out judge: {esc(judge.get('model', '?'))}"
            + (f", aesthetic head: {esc(judge['aesthetic'])}" if judge.get("aesthetic") else "")
            + (f"; guided by: {esc(', '.join(map(str, s['guides'])))}" if isinstance(s.get("guides"), list) else "")
            + "</p>")
    out += f"<img class=\"plot\" alt=\"judge and guide scores\" src=\"{data_uri(plot.read_bytes())}\">"

    def num(v):
        return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
    rows = "".join(f"<tr><td>{f['step']}</td><td>{num(f['judge'])}</td><td>{num(f.get('aesthetic'))}</td>"
                   f"<td>{num(f.get('guide'))}</td></tr>" for f in s["frames"])
    out += f"<table><tr><th>step</th><th>judge</th><th>aesthetic</th><th>guide</th></tr>{rows}</table>"
    best = s.get("best") if isinstance(s.get("best"), dict) else None
    if best:
        out += f"<p>best frame: step {esc(best.get('step'))} ({esc(best.get('file'))})</p>"
    if s.get("stopped_by"):
        out += f"<p>stopped by {esc(s['stopped_by'])}</p>"
    return out + "</section>"


def _frames_section(rec: RunRecord) -> str:
    out = "<section id=\"frames\"><h2>Frames</h2>"
    final = rec.folder / FINAL_FILE
    if final.is_file():
        out += (f"<figure><img class=\"final\" alt=\"final image\" src=\"{thumbnail(final, FINAL_SIDE)}\">"
                "<figcaption>final.png</figcaption></figure>")
    if not rec.frames:
        return out + "<p class=\"missing\">no saved frames</p></section>"
    figures = "".join(f"<figure><img alt=\"step {step}\" src=\"{thumbnail(path, THUMB)}\"><figcaption>step {step}"
                      "</figcaption></figure>" for step, path in strip_frames(rec.frames))
    return out + f"<div class=\"strip\">{figures}</div></section>"


def _speed_section(rec: RunRecord) -> str:
    out = "<section id=\"speed\"><h2>Speed</h2>"
    if not rec.speed:
        return out + "<p class=\"missing\">no speed recorded</p></section>"
    rows = "".join(f"<tr><td>{esc(p.get('from_step'))}-{esc(p.get('to_step'))}</td><td>{esc(p.get('it_per_s'))}</td>"
                   f"<td>{esc(p.get('seconds'))}</td><td>{esc(p.get('device'))}</td>"
                   f"<td>{esc(p.get('peak_memory_mb'))} ({esc(p.get('memory'))})</td></tr>" for p in rec.speed)
    return (out + "<table><tr><th>steps</th><th>it/s</th><th>seconds</th><th>device</th><th>peak memory (MB)</th>"
            f"</tr>{rows}</table></section>")


def report_html(rec: RunRecord, loss_png: Optional[Path], scores_png: Optional[Path]) -> str:
    """The page of a run from its record and its plots (None: that plot could not be made)."""
    prompt = rec.job.get("prompt") if isinstance(rec.job.get("prompt"), str) else ""
    notes = "".join(f"<li>{esc(m)}</li>" for m in rec.missing)
    body = (f"<h1>{esc(rec.folder.name)}</h1><p>{esc(prompt)}</p>"
            + (f"<ul class=\"missing\" id=\"missing\">{notes}</ul>" if notes else "")
            + _loss_section(rec, loss_png) + _judge_section(rec, scores_png) + _frames_section(rec)
            + f"<section id=\"job\"><h2>Job</h2><details><summary>job.yaml</summary><pre>"
            f"{esc(rec.job_text) or 'no job.yaml'}</pre></details></section>"
            + _speed_section(rec))
    return page(f"vqclip report: {rec.folder.name}", body)


def write_report(folder: Path, quiet: bool = False) -> Path:
    """Make (or make again) report.html and report/*.png of the run in `folder`; each missing part is a notice
    (unless `quiet`). A folder that is not a run, or no matplotlib, is a one-line error."""
    rec = read_run(Path(folder))
    check_plotting()
    if not quiet:
        for line in rec.missing:
            log.info("%s: %s", rec.folder, line)
    plots = rec.folder / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    loss = loss_plot(rec.terms, rec.losses, rec.markers, plots / LOSS_PNG) if rec.losses else None
    scores = rec.scores["frames"] if rec.scores else []
    best = rec.scores.get("best") if rec.scores else None
    best_step = best.get("step") if isinstance(best, dict) and isinstance(best.get("step"), int) else None
    judged = score_plot(scores, plots / SCORES_PNG, best_step) if scores else None
    for made, name in ((loss, LOSS_PNG), (judged, SCORES_PNG)):
        if made is None:  # a plot of an earlier report that this one cannot make: not left to contradict it
            (plots / name).unlink(missing_ok=True)
    return write_text(rec.folder / REPORT_FILE, report_html(rec, loss, judged))
