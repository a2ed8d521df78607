"""Restyle a video: each input frame (blended with the previous output, for temporal smoothness) starts a short run
of the one loop towards the prompt; the outputs become a video at the input's fps, with its audio carried over.

Frame i is seeded with seed + i and starts from the previous output as saved (8-bit PNG), so a stopped or killed
restyle resumes at the first missing frame and still gives the same frames. A story's clock is the frame index. With
`restyle.flow`, the previous output warped by the input's optical flow joins the start and a loss term
(`vqclip.modes.stabilise`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..draw.registry import load as load_drawer
from ..errors import VqclipError
from ..files.images import cover, load_image, to_tensor
from ..files.video import open_video
from ..nets.device import pick_device
from ..nets.flow import load_flow
from ..optim.loop import run_steps
from ..optim.schedules import story_keyframes
from .base import GenerateResult, Mode, RunContext, start_run
from .rules import RestyleRules
from .stabilise import Stabiliser, stabilised
from .story import story_targets

log = logging.getLogger("vqclip")


def fit_size(width: int, height: int, long_side: int, factor: int) -> tuple[int, int]:
    """(w, h) with the aspect of width x height, the long side `long_side`, both multiples of `factor`."""
    scale = long_side / max(width, height)
    return tuple(max(factor, round(side * scale / factor) * factor) for side in (width, height))  # type: ignore


def frame_to_tensor(frame: np.ndarray, size: tuple[int, int]) -> Tensor:
    """A uint8 frame [h,w,3] as [1,3,H,W] in [0,1] for size (W, H): resized to cover it, centre-cropped."""
    return to_tensor(cover(Image.fromarray(frame), size))


def frames_done(frames: list[Path]) -> int:
    """How many input frames are restyled: frames 0, 1, ... present without a gap."""
    names, done = {p.name for p in frames}, 0
    while f"{done:06d}.png" in names:
        done += 1
    return done


class Restyle(Mode):
    """One short run per input frame of `restyle.input`; one output frame each, written as it is made."""

    name = "restyle"
    video_name = "restyled"
    saves_state = False  # resumes at the first missing frame instead
    final_frame = False  # the final image is the last frame, already written

    def __init__(self, first: int = 0):
        self.first = first  # restyle input frames [first, restyle.max_frames or all): a share of them (a cluster's)
        self.frames_total = 0
        self.meta: dict = {}
        self.flow = None  # a stabilised restyle's flow estimator, loaded by `prepare`

    def frame_every(self, cfg) -> int:
        return 0  # the frames are the restyled input frames, written by `run`

    def prepare(self, cfg, models):
        """Read the video's size, rate and frame count (a story's parts need a frame each); keep its aspect (long side
        max(size)) unless told not to; load a stabilised restyle's flow estimator (so that missing OpenCV or RAFT
        weights not on disk fail before the run folder is made)."""
        reader, _, self.meta = open_video(Path(cfg.restyle.input))  # a missing or unreadable video fails here
        reader.close()
        if stabilised(cfg.restyle) and self.flow is None:
            self.flow = load_flow(cfg.restyle.flow, pick_device(cfg.devices[0] if cfg.devices else cfg.device))
        self.frames_total = RestyleRules().frame_count(cfg)
        if self.frames_total:  # a story's parts are spread over the frames: too many for them fail here, not mid-run
            story_keyframes(cfg.prompt, cfg.story, self.frames_total, cfg.change_every, "input frames")
        if cfg.restyle.keep_aspect:
            factor = load_drawer(cfg.drawer.name).size_factor(cfg, models)
            cfg = replace(cfg, size=list(fit_size(*self.meta["size"], max(cfg.size), factor)))
        return cfg

    def total(self, cfg) -> int:
        return max(self.frames_total - self.first, 0) * cfg.restyle.steps_per_frame

    def steps_done(self, cfg, frames: list[Path]) -> int:
        return frames_done(frames) * cfg.restyle.steps_per_frame

    def fps(self, cfg, frames: int) -> float:
        """The output frame rate: frames / video_length when that is set, else restyle.fps, else the input's."""
        if cfg.output.video_length:
            return frames / cfg.output.video_length
        return cfg.restyle.fps or float(self.meta["fps"])

    def audio(self, cfg):
        """The video whose audio track the output carries, or None."""
        return Path(cfg.restyle.input) if cfg.restyle.audio and self.meta.get("audio_codec") else None

    def run(self, ctx: RunContext) -> GenerateResult:
        cfg, r, n = ctx.cfg, ctx.cfg.restyle, self.frames_total
        if ctx.frames is None:
            raise VqclipError("a restyle writes its frames into a run folder: run it with `vqclip restyle`, `vqclip run` "
                              "or Pipeline.run(job, out=DIR)")
        existing = {p.name: p for p in ctx.frames.existing()}
        done = frames_done(list(existing.values()))
        audio = self.audio(cfg)
        log.info("restyling %d frames of %s at %.3g fps%s%s", n, r.input, r.fps or self.meta["fps"],
                 ", with its audio" if audio else "", f", from frame {done}" if done else "")
        current = [0]  # the story's clock: the input frame being made
        story = story_targets(cfg, ctx.device, length=n, clock=lambda _step: current[0])
        objective, state = start_run(cfg, ctx.models, ctx.device, ctx.seed, story)
        saved: list[Path] = []
        prev, stopped, curve = None, False, []
        if stabilised(r) and self.flow is None:  # a run not prepared by the pipeline loads its flow estimator here
            self.flow = load_flow(r.flow, ctx.device)
        stable = Stabiliser(r, self.flow, objective) if stabilised(r) else None
        before = None  # the previous input frame [1,3,H,W], for the flow of a stabilised restyle
        size = (objective.width, objective.height)
        reader, frames, _ = open_video(Path(r.input))
        try:
            for i, frame in enumerate(frames):
                if i >= n:
                    break
                if i < self.first:  # another worker's share of the frames (independent: blend 0)
                    continue
                if i < done:  # made before an interruption: kept, it is the next frame's predecessor
                    saved.append(existing[f"{i:06d}.png"])
                    prev = load_image(saved[-1]) if i == done - 1 else None
                    before = frame_to_tensor(frame, size) if stable and i == done - 1 else None
                    continue
                current[0] = i
                image = frame_to_tensor(frame, size)
                start = image if prev is None or r.blend == 0 else (1 - r.blend) * image + r.blend * prev
                if stable is not None:  # blend first, then the warped previous output's share
                    start = stable.start(start, image, before, prev)
                    before = image
                torch.manual_seed(ctx.seed + i)
                with torch.no_grad():
                    z = objective.drawer.encode(start.to(ctx.device))
                state.restart(z.to(state.z.dtype), ctx.seed + i)
                curve, stopped = run_steps(state, objective, lambda s: ctx.lr_at(s, r.steps_per_frame),
                                           r.steps_per_frame, r.steps_per_frame, ctx.callbacks, frame=i)
                if stopped and state.step < r.steps_per_frame:
                    break  # a half-made frame is dropped; resume makes it again
                with torch.no_grad():
                    out = objective.decode(state.z).detach()
                saved.append(ctx.frames.write(i, out))
                prev = load_image(saved[-1])  # the 8-bit frame, exactly as a resumed run will see it
                if stopped:
                    break
        finally:
            reader.close()
        if not saved:
            raise VqclipError(f"{r.input}: no frame was restyled" + (" (stopped before the first one finished)"
                                                                     if stopped else "; is the video empty?"))
        return GenerateResult(load_image(saved[-1]), state.z.detach().clone(), ctx.seed, r.steps_per_frame * len(saved),
                              curve, stopped, frames=saved, info={"frames_done": len(saved)})
