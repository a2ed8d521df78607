"""Restyle a video: each input frame (blended with the previous output, for temporal smoothness) starts a short
generation towards the prompt; the outputs become a video at the input's fps, with its audio track carried over.

Frame i is seeded with seed + i and starts from the previous output as saved (8-bit PNG), so a stopped or killed
restyle resumes at the first missing frame and still gives the same frames. Video I/O goes through imageio-ffmpeg's
own ffmpeg binary, called with argument lists (no shell).
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .config import GenerateConfig
from .errors import VqclipError, reason
from .generator import Callback, GenerateResult, seeded

log = logging.getLogger("vqclip")

VIDEO_NAME = "restyled"


def fit_size(width: int, height: int, long_side: int, factor: int) -> tuple[int, int]:
    """(w, h) with the aspect of width x height, the long side `long_side`, both multiples of `factor`."""
    scale = long_side / max(width, height)
    return tuple(max(factor, round(side * scale / factor) * factor) for side in (width, height))  # type: ignore


def frame_to_tensor(frame: np.ndarray, size: tuple[int, int]) -> Tensor:
    """A uint8 frame [h,w,3] as [1,3,H,W] in [0,1] for size (W, H): resized to cover it, centre-cropped."""
    im = Image.fromarray(frame)
    w, h = size
    if im.size != (w, h):
        scale = max(w / im.width, h / im.height)
        im = im.resize((max(w, round(im.width * scale)), max(h, round(im.height * scale))), Image.LANCZOS)
        left, top = (im.width - w) // 2, (im.height - h) // 2
        im = im.crop((left, top, left + w, top + h))
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


def open_video(path: Path):
    """(frame iterator of uint8 [h,w,3], metadata with size, fps and audio_codec when there is audio)."""
    import imageio_ffmpeg

    if not path.is_file():
        raise VqclipError(f"{path}: no such video file")
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as exc:
        reader.close()
        raise VqclipError(f"{path}: not a readable video ({reason(exc, 160)}); give a video file ffmpeg can read "
                          "(mp4, webm, mov, gif, ...)") from None  # the first line: ffmpeg's log follows it
    w, h = meta["size"]
    frames = (np.frombuffer(buf, np.uint8).reshape(h, w, 3) for buf in reader)
    return reader, frames, meta


def count_frames(path: Path) -> int:
    """The number of frames of a video (decodes it once, without keeping anything)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def mux_audio(video: Path, source: Path, out: Path, seconds: Optional[float] = None) -> None:
    """Write `out` (atomically): every frame of `video` plus the first audio track of `source` as AAC, reading at
    most `seconds` of audio (the video's length: restyling only the first frames keeps only their audio)."""
    import imageio_ffmpeg

    tmp = out.with_name(f".{out.stem}.part{out.suffix}")
    limit = ["-t", f"{seconds:.6f}"] if seconds else []  # on the audio input: the video is never cut
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(video), *limit, "-i", str(source),
           "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "192k", str(tmp)]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise VqclipError(f"{source}: could not carry its audio over ({done.stderr.strip()[:200]}); "
                          "set restyle.audio: false (--no-audio) to skip it")
    os.replace(tmp, out)


def restyle_job(cfg: GenerateConfig, *, cache=None, stop: Optional[threading.Event] = None,
                extra_callbacks: Iterable[Callback] = (), resume: bool = False):
    """Restyle `cfg.restyle.input` into a run folder: job.yaml, frames/NNNNNN.png (one per input frame),
    final.png (the last frame, with its config) and restyled.mp4 (or .gif); `resume` continues a run folder."""
    from .animation import make_generation
    from .callbacks import ProgressBar, StopOnFlag, frame_path
    from .config import to_yaml
    from .generator import pick_device, resolve_seed
    from .init import load_image
    from .jobs import RunResult, load_models
    from .outputs import atomic_write_text, check_run_dir, claim_run_dir, default_run_dir, save_png

    r = cfg.restyle
    source = Path(r.input)
    device = pick_device(cfg.device)
    reader, frames, meta = open_video(source)  # a missing or unreadable video fails before anything is made
    try:
        if resume:
            run_dir = Path(cfg.output.dir)
        else:
            cfg = replace(cfg, seed=resolve_seed(cfg.seed))
            run_dir = check_run_dir(Path(cfg.output.dir) if cfg.output.dir else default_run_dir(cfg.prompt))
            cfg = replace(cfg, output=replace(cfg.output, dir=str(run_dir)))
        models = load_models(cfg, device, cache)
        if r.keep_aspect:
            cfg = replace(cfg, size=list(fit_size(*meta["size"], max(cfg.size), models.vqgan.factor)))
        frames_dir = run_dir / "frames"
        if not resume:
            claim_run_dir(run_dir)
            atomic_write_text(run_dir / "job.yaml", to_yaml(cfg))
        frames_dir.mkdir(exist_ok=True)
        total = count_frames(source)
        n = min(total, r.max_frames) if r.max_frames else total
        done = 0
        while done < n and frame_path(frames_dir, done).is_file():
            done += 1
        if resume and done == n and (run_dir / "final.png").is_file():
            raise VqclipError(f"{run_dir}: all {n} frames are already restyled")
        audio = r.audio and bool(meta.get("audio_codec"))
        log.info("restyling %d frames of %s at %.3g fps%s%s", n, source, r.fps or meta["fps"],
                 ", with its audio" if audio else "", f", from frame {done}" if done else "")
        # One Generation for all frames (prompts embedded once); the story's clock is the frame index
        gen_cfg = replace(cfg, steps=r.steps_per_frame)
        current = [0]
        stopped, result, saved = False, None, []
        with seeded(device, cfg.seed):
            gen = make_generation(gen_cfg, models, device, cfg.seed, clock=lambda _step: current[0], story_length=n)
            bar = ProgressBar(n * r.steps_per_frame, initial=done * r.steps_per_frame, desc="restyle") \
                if cfg.output.progress else None
            callbacks: list[Callback] = [*extra_callbacks, *([bar] if bar else [])]
            if stop is not None:
                callbacks.append(StopOnFlag(stop))
            prev = None
            try:
                for i, frame in enumerate(frames):
                    if i >= n:
                        break
                    path = frame_path(frames_dir, i)
                    if i < done:  # made before an interruption: keep it, it is the next frame's predecessor
                        saved.append(path)
                        prev = load_image(path) if i == done - 1 else None
                        continue
                    if stop is not None and stop.is_set():
                        stopped = True
                        break
                    current[0] = i
                    image = frame_to_tensor(frame, (gen.width, gen.height))
                    start = image if prev is None else (1 - r.blend) * image + r.blend * prev
                    torch.manual_seed(cfg.seed + i)
                    gen.rng.manual_seed(cfg.seed + i)
                    with torch.no_grad():
                        z = models.vqgan.encode(start.to(device)).to(gen.z.dtype)
                    gen.set_latent(z, reset_optimizer=True)
                    gen.z_init.copy_(z)
                    gen.step_count = 0
                    result = gen.run(callbacks)
                    stopped = result.stopped
                    if stopped and gen.step_count < r.steps_per_frame:
                        break  # a half-made frame is dropped; resume makes it again
                    saved.append(save_png(result.image, path))
                    prev = load_image(path)  # the 8-bit frame, exactly as a resumed run will see it
                    if stopped:
                        break
            finally:
                if bar:
                    bar.close()
    finally:
        reader.close()
    if not saved:
        raise VqclipError(f"{source}: no frame was restyled" + (" (stopped before the first one finished)"
                                                                  if stopped else "; is the video empty?"))
    fps = len(saved) / cfg.output.video_length if cfg.output.video_length else (r.fps or float(meta["fps"]))
    final, video = _write_outputs(cfg, run_dir, saved, fps, source if audio else None, stopped)
    last = load_image(final)
    if result is None:
        result = GenerateResult(last, gen.z.detach().clone(), cfg.seed, 0, [], stopped)
    result = replace(result, image=last, steps=r.steps_per_frame * len(saved), stopped=stopped)
    return RunResult(run_dir, final, video, saved, cfg, result)


def _write_outputs(cfg: GenerateConfig, run_dir: Path, saved: list[Path], fps: float, audio_from: Optional[Path],
                   stopped: bool) -> tuple[Path, Optional[Path]]:
    """final.png (the last frame, with the job inside) and restyled.mp4/.gif, with the audio of `audio_from`."""
    from .config import to_dict
    from .init import load_image
    from .outputs import save_png, versions
    from .video import write_video

    metadata = {"prompt": cfg.prompt, "seed": cfg.seed, "steps_done": cfg.restyle.steps_per_frame * len(saved),
                "frames_done": len(saved), "stopped": stopped, "config": to_dict(cfg), "versions": versions()}
    final = save_png(load_image(saved[-1]), run_dir / "final.png", metadata)
    if not cfg.output.video:
        return final, None
    fmt = cfg.output.video_format
    video = run_dir / f"{VIDEO_NAME}.{fmt}"
    if fmt == "mp4" and audio_from is not None:
        silent = run_dir / f".{VIDEO_NAME}.noaudio.mp4"
        write_video(saved, silent, fps, fmt)
        mux_audio(silent, audio_from, video, len(saved) / fps)
        silent.unlink()
    else:
        write_video(saved, video, fps, fmt, cfg.output.gif_max_side)
    return final, video
