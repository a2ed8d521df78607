"""Judging a run's frames: the preset's held-out judge (never one of the run's guides) scores every saved frame after
its step, into scores.json; `keep_best` keeps the best-scored frame as best.png, `patience` ends the run once the
judge has not improved for K scored frames. A resume rebuilds the best and the counter from scores.json, so it ends
as the uninterrupted run does."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

import torch

from ..errors import VqclipError
from ..files.atomic import atomic_path
from ..files.scores import read_scores, write_scores
from ..models.download import fetch
from ..models.integrity import sha256_file
from ..models.presets import DEFAULT_PRESET, Preset, get_preset
from ..models.resolve import resolve_clip
from ..models.spec import canonical_model
from ..nets.judge import Judge, load_aesthetic
from ..nets.load import ModelCache, Models
from ..optim.loop import StepEvent
from ..optim.prompts import parse_prompts
from ..optim.schedules import STORY_SEPARATOR, story_keyframes

log = logging.getLogger("vqclip")

BEST_FILE = "best.png"


def judged(cfg) -> bool:
    """Whether a job scores its frames: output.judge, or keep_best or patience, which need the scores."""
    o = cfg.output
    return bool(o.judge or o.keep_best or o.patience is not None)


def _preset(cfg) -> Preset:
    """The preset whose judge scores the job (its `model`, else the default preset's); one without a judge is a
    one-line error."""
    preset = get_preset(cfg.model or DEFAULT_PRESET)
    if preset.judge is None:
        raise VqclipError(f"output.judge: the {preset.name} preset names no judge; add judge: {{model: ..., "
                          "pretrained: ...}} to it (a CLIP that does not guide its runs), or turn output.judge, "
                          "keep_best and patience off")
    return preset


def judge_clip(cfg) -> tuple[str, Optional[str]]:
    """The job's judge CLIP as (model, pretrained): the preset's, its files found in the preset's folder."""
    preset = _preset(cfg)
    return preset.local(preset.judge.model), preset.local(preset.judge.pretrained)


def _same(a: Optional[str], b: Optional[str]) -> bool:
    """Whether two CLIP model or weights values name the same thing: the same name or tag, or the same file (the
    same path, or the same bytes under another name)."""
    if a is None or b is None:
        return a is None and b is None
    pa, pb = Path(a), Path(b)
    if pa.is_file() and pb.is_file():
        return pa.samefile(pb) or (pa.stat().st_size == pb.stat().st_size and sha256_file(pa) == sha256_file(pb))
    return canonical_model(a).strip().lower() == canonical_model(b).strip().lower()


def guide_specs(cfg) -> list[tuple[str, Optional[str]]]:
    """(model, pretrained) of every CLIP that steers the run: its guides, and best-of-n's scorers when it has starts."""
    scorers = cfg.candidates.clip if cfg.candidates.n > 1 else []
    return [(c.model, c.pretrained) for c in (*cfg.clip, *scorers)]


def check_judge(cfg) -> None:
    """Refuse, in one line, a judged job whose judge is also one of its guides (its score would flatter the run)."""
    model, pretrained = judge_clip(cfg)
    for i, (g_model, g_pretrained) in enumerate(guide_specs(cfg)):
        weights_file = bool(pretrained and g_pretrained and Path(pretrained).is_file() and Path(g_pretrained).is_file())
        if (weights_file and _same(pretrained, g_pretrained)) or (
                not weights_file and _same(model, g_model) and _same(pretrained, g_pretrained)):
            name = f"{Path(model).name}, {pretrained and Path(pretrained).name}"
            raise VqclipError(f"output.judge: the judge ({name}) also "
                              f"guides this run (clip[{i}]), so its score would flatter the image; guide with another "
                              "CLIP, or turn output.judge, keep_best and patience off")


def judge_texts(cfg) -> list[tuple[str, float]]:
    """(text, weight) of the job's positive text targets (each part of a story, each keyframe's), once each."""
    parts = cfg.prompt.count(STORY_SEPARATOR) + 1
    keyframes = story_keyframes(cfg.prompt, cfg.story, max(cfg.steps, parts), cfg.change_every)
    specs = [k.prompt for k in keyframes] + ([] if STORY_SEPARATOR in cfg.prompt else [cfg.prompt])
    found: dict[str, float] = {}
    for spec in specs:
        for p in parse_prompts(spec):
            if p.weight > 0 and not p.image:
                found.setdefault(p.text, p.weight)
    return list(found.items())


def _name(model: str, pretrained: Optional[str]) -> str:
    """A short name of a CLIP for scores.json: the model's name (a file's name) and its tag or weights file's name."""
    parts = [Path(model).name if Path(model).suffix else model] + ([Path(pretrained).name] if pretrained else [])
    return " ".join(parts)


def load_judge(cfg, models: Models, device: torch.device, cache: Optional[ModelCache] = None) -> Judge:
    """The job's judge, loaded (and its aesthetic head fetched into the preset's folder once, as presets' files are),
    with the run's guides beside it for their own score."""
    check_judge(cfg)
    preset = _preset(cfg)
    model, pretrained = judge_clip(cfg)
    clip = (cache or ModelCache()).clip(resolve_clip(model, pretrained), device)
    head, head_name = None, None
    if preset.judge.aesthetic is not None:
        spec = preset.judge.aesthetic
        path = preset.folder() / spec.filename
        if not path.is_file():
            path = fetch(spec, preset.folder(), progress=cfg.output.progress)
        with torch.no_grad():
            width = clip.encode_text(["a"]).shape[-1]  # the embedding the head reads
        head = load_aesthetic(path, int(width), device)
        head_name = spec.filename
    return Judge(clip, judge_texts(cfg), list(models.clips), head, _name(model, pretrained), head_name)


class Judging:
    """Scores each saved frame (`scored`, the frames' writer calls it), keeps scores.json, best.png and the patience
    counter; as a step callback, stops the run when the judge has not improved for `patience` scored frames."""

    def __init__(self, judge, cfg, run_dir: Path, start: int = 0):
        self.judge, self.dir = judge, Path(run_dir)
        self.keep_best, self.patience = cfg.output.keep_best, cfg.output.patience
        self.data = {"judge": {"model": judge.name, "aesthetic": judge.aesthetic_name},
                     "guides": [_name(c.model, c.pretrained) for c in cfg.clip], "frames": [], "best": None,
                     "stopped_by": None}
        self.best: Optional[int] = None  # index into frames of the best-scored frame
        self.scored_at: Optional[int] = None  # the step of the latest frame scored
        self.info: Optional[dict] = None  # final.png's record, once the run has ended (`record_in`)
        old = read_scores(self.dir) if start > 0 else None
        for frame in (old or {}).get("frames", []):  # the frames a resume keeps: those before its saved step
            if frame["step"] < start:
                self._add(frame)
        if self.best is not None and self.keep_best:
            self._keep(self.dir / self.data["frames"][self.best]["file"])

    @property
    def stale(self) -> int:
        """Frames scored since the best one (0 when the latest is the best)."""
        return 0 if self.best is None else len(self.data["frames"]) - 1 - self.best

    def _add(self, frame: dict) -> bool:
        """Record a scored frame; True when it is the new best (ties keep the earlier)."""
        frames = self.data["frames"]
        frames.append(frame)
        if self.best is None or frame["judge"] > frames[self.best]["judge"]:
            self.best = len(frames) - 1
            return True
        return False

    def _keep(self, source: Path) -> None:
        """best.png: the best frame's file copied (atomically), and its step in scores.json."""
        with atomic_path(self.dir / BEST_FILE) as tmp:
            shutil.copyfile(source, tmp)
        self.data["best"] = {"step": self.data["frames"][self.best]["step"], "file": BEST_FILE}

    def scored(self, step: int, path: Path, image) -> dict:
        """Score the frame saved at `step` as `path` (image [1,3,H,W] in [0,1]), after the step and off the loss;
        record it, keep best.png, write scores.json."""
        record = {"step": int(step), "file": Path(path).relative_to(self.dir).as_posix(),
                  **self.judge.score(image.detach())[0]}
        if self._add(record) and self.keep_best:
            self._keep(Path(path))
            if self.info is not None:
                self.info["best_step"] = self.best_step
        self.scored_at = int(step)
        write_scores(self.dir, self.data)
        return record

    @property
    def best_step(self) -> Optional[int]:
        return None if self.best is None else self.data["frames"][self.best]["step"]

    def record_in(self, info: dict) -> None:
        """Keep the best frame's step in `info` (what final.png records), now and as later frames improve on it."""
        self.info = info
        if self.best is not None:
            info["best_step"] = self.best_step

    def __call__(self, event: StepEvent) -> bool:
        """Stop at the end of this step when its frame was scored and the judge has not improved for `patience`
        frames."""
        if self.patience is None or self.scored_at != event.step or self.stale < self.patience:
            return False
        self.data["stopped_by"] = "patience"
        write_scores(self.dir, self.data)
        log.info("the judge has not improved for %d scored frames (best at step %d): stopping", self.stale,
                 self.best_step)
        return True


def stopped_by_patience(run_dir: Path) -> Optional[dict]:
    """A run folder's scores when patience ended it (its end is final.png), else None."""
    data = read_scores(run_dir)
    return data if data is not None and data.get("stopped_by") == "patience" else None
