"""Frames to a video file: mp4 through imageio-ffmpeg (argument lists, no shell, no system ffmpeg) or GIF."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from .errors import VqclipError


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
    tmp = path.with_name(path.name + ".part.mp4")
    writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=2, quality=8, ffmpeg_log_level="error")
    writer.send(None)
    try:
        writer.send(np.ascontiguousarray(first))
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    os.replace(tmp, path)


def write_gif(frames: Iterable[np.ndarray], path: Path, fps: float, max_side: int | None = None) -> None:
    """Looping GIF from uint8 frames [H,W,3], optionally shrunk so no side exceeds `max_side`; atomic."""
    images = [Image.fromarray(f) for f in frames]
    if not images:
        raise VqclipError(f"{path}: no frames to write")
    if max_side and max(images[0].size) > max_side:
        scale = max_side / max(images[0].size)
        size = (max(1, round(images[0].width * scale)), max(1, round(images[0].height * scale)))
        images = [im.resize(size, Image.LANCZOS) for im in images]
    tmp = path.with_name(path.name + ".part")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    os.replace(tmp, path)


def write_video(frame_paths: list[Path], path: Path, fps: float, fmt: str = "mp4",
                max_side: int | None = None) -> Path:
    """Encode PNG frames (in order) to `path` as mp4 or gif; returns the path written."""
    frames = (_read_rgb(p) for p in frame_paths)
    if fmt == "gif":
        write_gif(frames, path, fps, max_side)
    elif fmt == "mp4":
        write_mp4(frames, path, fps)
    else:
        raise VqclipError(f"video format '{fmt}' is not supported; use mp4 or gif")
    return path


def read_video_frames(path: Path) -> tuple[list[np.ndarray], float]:
    """All frames of a video as uint8 [H,W,3] arrays, and its fps."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(buf, np.uint8).reshape(h, w, 3).copy() for buf in reader]
    return frames, float(meta["fps"])
