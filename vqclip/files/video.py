"""Videos through imageio's v3 API: mp4 written and read by its FFMPEG plugin (imageio-ffmpeg's own binary, no
system ffmpeg), GIFs by its pillow plugin; the audio mux calls that same binary (argument lists, no shell). Every
output is written atomically."""

from __future__ import annotations

import itertools
import subprocess
import threading
import traceback
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
from PIL import Image

from ..errors import VqclipError, reason
from .atomic import atomic_path, write_bytes

VIDEO_FORMATS = ("mp4", "gif")
INTERPOLATE_METHODS = ("flow", "blend", "ffmpeg")  # output.interpolate_method: vqclip.optim.interpolate
MAX_INTERPOLATE = 15  # in-between frames per pair at most (16 times the frames: more is a slow-motion tool's job)
FFMPEG = {"plugin": "FFMPEG", "extension": ".mp4"}  # ffmpeg looks at the content; the plugin, at the name only


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    """H.264 mp4 (yuv420p) from uint8 frames [H,W,3] with even sides, streamed to ffmpeg one at a time; atomic."""
    import imageio.v3 as iio

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise VqclipError(f"{path}: no frames to write")
    with atomic_path(path) as tmp:
        try:
            iio.imwrite(tmp, itertools.chain([first], frames), is_batch=True, fps=fps, codec="libx264",
                        pixelformat="yuv420p", macro_block_size=2, quality=8, ffmpeg_log_level="error", **FFMPEG)
        except BaseException as exc:  # imageio closes its ffmpeg writer only on success: drop it (ffmpeg ends)
            traceback.clear_frames(exc.__traceback__)  # before the temporary file is removed, or it comes back
            raise


def gif_durations(n: int, fps: float) -> list[int]:
    """Per-frame GIF durations in ms, on the format's 10 ms grid, that add up to n / fps seconds (30 fps: 30, 40,
    30, ... rather than 30 each, which would play at 33 fps)."""
    ends = [round(100 * (i + 1) / fps) * 10 for i in range(n)]
    return [max(10, b - a) for a, b in zip([0] + ends, ends)]


def write_gif(frames: Iterable[np.ndarray], path: Path, fps: float, max_side: int | None = None) -> None:
    """Looping GIF from uint8 frames [H,W,3] at `fps`, optionally shrunk so no side exceeds `max_side`; atomic.
    (Pillow merges a frame identical to the one before it into it, adding up their durations.)"""
    import imageio.v3 as iio

    frames = list(frames)
    if not frames:
        raise VqclipError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        frames = [np.asarray(Image.fromarray(f).resize(size, Image.LANCZOS)) for f in frames]
    data = iio.imwrite("<bytes>", np.stack(frames), plugin="pillow", extension=".gif", is_batch=True,
                       duration=gif_durations(len(frames), fps), loop=0)  # encoded in memory: no writer to clean up
    write_bytes(path, data)


def read_frames(frame_paths: Iterable[Path]) -> Iterator[np.ndarray]:
    """PNG frames as uint8 [H,W,3], read one at a time."""
    return (_read_rgb(p) for p in frame_paths)


def write_video(frame_paths: list[Path], path: Path, fps: float, fmt: str = "mp4",
                max_side: int | None = None) -> Path:
    """Encode PNG frames (in order) to `path` as mp4 or gif; returns the path written."""
    return write_frames(read_frames(frame_paths), path, fps, fmt, max_side)


def write_frames(frames: Iterable[np.ndarray], path: Path, fps: float, fmt: str = "mp4",
                 max_side: int | None = None) -> Path:
    """Encode uint8 frames [H,W,3] (in order) to `path` as mp4 or gif; returns the path written."""
    if fmt == "gif":
        write_gif(frames, path, fps, max_side)
    elif fmt == "mp4":
        write_mp4(frames, path, fps)
    else:
        raise VqclipError(f"video format '{fmt}' is not supported; use {' or '.join(VIDEO_FORMATS)}")
    return path


def inbetween_count(frames: int, n: int) -> int:
    """The frames of a video of `frames` saved frames with `n` in-betweens in each gap: (frames - 1) * (n + 1) + 1."""
    return (frames - 1) * (n + 1) + 1 if frames else 0


def minterpolate(frames: Iterable[np.ndarray], fps: float, n: int) -> Iterator[np.ndarray]:
    """uint8 frames [H,W,3] at `fps` with `n` in-betweens in each gap by ffmpeg's motion-compensated interpolation
    (`minterpolate=fps=fps*(n+1):mi_mode=mci`), streamed as raw RGB through imageio-ffmpeg's binary: the
    given ones (re-made by the filter) at every (n+1)-th place, `inbetween_count` frames in all."""
    import imageio_ffmpeg

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return
    h, w = first.shape[:2]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", repr(float(fps)), "-i", "-", "-vf", f"minterpolate=fps={float(fps) * (n + 1)!r}:mi_mode=mci",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    failed: list[BaseException] = []

    def feed() -> None:  # in a thread, so that ffmpeg's output is read while its input is written
        last = first
        try:
            for frame in itertools.chain([first], frames):
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())
                last = frame
            proc.stdin.write(np.ascontiguousarray(last).tobytes())  # the filter holds back the last frame: repeat it
        except BrokenPipeError:
            pass  # ffmpeg ended: its error is read below
        except BaseException as exc:  # noqa: BLE001 - a frame that could not be read: raised in the caller's thread
            failed.append(exc)
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:  # the flush of what ffmpeg did not read
                pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    size = h * w * 3
    try:
        while len(data := proc.stdout.read(size)) == size:
            yield np.frombuffer(data, np.uint8).reshape(h, w, 3)
        feeder.join()
        error = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            why = reason(RuntimeError(error), 200, whole=True)
            raise VqclipError(f"output.interpolate_method ffmpeg: ffmpeg's minterpolate failed ({why}); use flow or "
                              "blend")
        if failed:
            raise failed[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feeder.join()
        proc.stdout.close()
        proc.stderr.close()


def open_video(path: Path) -> tuple[object, Iterator[np.ndarray], dict]:
    """(reader to close, frame iterator of uint8 [h,w,3], metadata with size, fps and audio_codec when there is
    audio); the frames are decoded only once iterated. A missing or unreadable video is a one-line error."""
    import imageio.v3 as iio

    if not path.is_file():
        raise VqclipError(f"{path}: no such video file")
    try:
        meta = iio.immeta(path, **FFMPEG)
    except Exception as exc:  # noqa: BLE001 - ffmpeg's refusal comes as OSError, RuntimeError or imageio's own
        raise VqclipError(f"{path}: not a readable video ({reason(exc, 160)}); give a video file ffmpeg can read "
                          "(mp4, webm, mov, gif, ...)") from None  # the first line: ffmpeg's log follows it
    frames = iio.imiter(path, **FFMPEG)  # a generator: close() stops ffmpeg
    return frames, frames, meta


def count_frames(path: Path) -> int:
    """The number of frames of a video (ffmpeg decodes it once to nowhere; imageio's metadata only estimates it)."""
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
            why = reason(RuntimeError(done.stderr), 200, whole=True)  # ffmpeg's lines folded into one
            raise VqclipError(f"{source}: could not carry its audio over ({why}); "
                              "set restyle.audio: false (--no-audio) to skip it")


def read_video_frames(path: Path) -> tuple[list[np.ndarray], float]:
    """All frames of a video as uint8 [H,W,3] arrays, and its fps."""
    reader, frames, meta = open_video(Path(path))
    try:
        return list(frames), float(meta["fps"])
    finally:
        reader.close()
