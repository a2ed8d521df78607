"""Videos: every ffmpeg call of vqclip, through imageio-ffmpeg's own binary (argument lists, no shell, no system
ffmpeg); frames to mp4 or GIF, frames out of a video, its audio carried over. Every output is written atomically."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
from PIL import Image

from ..errors import VqclipError, reason
from .atomic import atomic_path

VIDEO_FORMATS = ("mp4", "gif")


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    """H.264 mp4 from uint8 frames [H,W,3] (even sides), written to `path` atomically."""
    import imageio_ffmpeg

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise VqclipError(f"{path}: no frames to write")
    h, w = first.shape[:2]
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                             macro_block_size=2, quality=8, ffmpeg_log_level="error")
        writer.send(None)
        try:
            writer.send(np.ascontiguousarray(first))
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()


def write_gif(frames: Iterable[np.ndarray], path: Path, fps: float, max_side: int | None = None) -> None:
    """Looping GIF from uint8 frames [H,W,3], optionally shrunk so no side exceeds `max_side`; atomic."""
    images = [Image.fromarray(f) for f in frames]
    if not images:
        raise VqclipError(f"{path}: no frames to write")
    if max_side and max(images[0].size) > max_side:
        scale = max_side / max(images[0].size)
        size = (max(1, round(images[0].width * scale)), max(1, round(images[0].height * scale)))
        images = [im.resize(size, Image.LANCZOS) for im in images]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                       loop=0)


def write_video(frame_paths: list[Path], path: Path, fps: float, fmt: str = "mp4",
                max_side: int | None = None) -> Path:
    """Encode PNG frames (in order) to `path` as mp4 or gif; returns the path written."""
    frames = (_read_rgb(p) for p in frame_paths)
    if fmt == "gif":
        write_gif(frames, path, fps, max_side)
    elif fmt == "mp4":
        write_mp4(frames, path, fps)
    else:
        raise VqclipError(f"video format '{fmt}' is not supported; use {' or '.join(VIDEO_FORMATS)}")
    return path


def open_video(path: Path) -> tuple[object, Iterator[np.ndarray], dict]:
    """(reader to close, frame iterator of uint8 [h,w,3], metadata with size, fps and audio_codec when there is
    audio); a missing or unreadable video is a one-line error."""
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

    limit = ["-t", f"{seconds:.6f}"] if seconds else []  # on the audio input: the video is never cut
    with atomic_path(out) as tmp:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(video), *limit, "-i", str(source),
               "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "192k", str(tmp)]
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if done.returncode != 0:
            raise VqclipError(f"{source}: could not carry its audio over ({done.stderr.strip()[:200]}); "
                              "set restyle.audio: false (--no-audio) to skip it")


def read_video_frames(path: Path) -> tuple[list[np.ndarray], float]:
    """All frames of a video as uint8 [H,W,3] arrays, and its fps."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(buf, np.uint8).reshape(h, w, 3).copy() for buf in reader]
    return frames, float(meta["fps"])
