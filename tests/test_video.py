"""Videos written and read through imageio: exact frame count and rate, sides kept, yuv420p, looping GIFs whose
frames last 1/fps, atomic writes."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from vqclip.errors import VqclipError
from vqclip.files.video import (count_frames, gif_durations, open_video, read_video_frames, write_gif, write_mp4,
                                write_video)


def frames(n: int, w: int = 50, h: int = 34) -> list[np.ndarray]:
    """n frames told apart by their brightness (and a bar that moves), uint8 [h,w,3]."""
    out = []
    for i in range(n):
        f = np.full((h, w, 3), 20 + 200 * i // max(n - 1, 1), np.uint8)
        f[4:12, 2 * i: 2 * i + 6] = (250, 30, 30)
        out.append(f)
    return out


@pytest.mark.parametrize("n,fps", [(7, 12.5), (9, 24), (5, 29.97)])
def test_mp4_has_every_frame_at_the_rate_and_size_given(tmp_path, n, fps):
    given = frames(n)
    path = tmp_path / "v.mp4"
    write_mp4(iter(given), path, fps)
    meta = iio.immeta(path, plugin="FFMPEG")
    back = list(iio.imiter(path, plugin="FFMPEG"))
    assert len(back) == n and count_frames(path) == n
    assert meta["fps"] == pytest.approx(fps, rel=1e-3) and meta["size"] == (50, 34)  # 34 is no multiple of 16
    assert meta["pix_fmt"].startswith("yuv420p")
    for a, b in zip(given, back):  # the same frames, in order (H.264 is lossy: a few levels off)
        assert b.shape == a.shape and np.abs(b.astype(int) - a).mean() < 6
    assert [int(b.mean()) for b in back] == sorted(int(b.mean()) for b in back)


def test_read_video_frames_and_open_video_agree_with_what_was_written(tmp_path):
    given = frames(6)
    write_mp4(given, tmp_path / "v.mp4", 6)
    got, fps = read_video_frames(tmp_path / "v.mp4")
    assert fps == 6 and len(got) == 6 and all(np.abs(g.astype(int) - a).mean() < 6 for g, a in zip(got, given))
    reader, it, meta = open_video(tmp_path / "v.mp4")
    try:
        first = next(it)
    finally:
        reader.close()
    assert meta["size"] == (50, 34) and meta["fps"] == 6 and first.shape == (34, 50, 3) and first.dtype == np.uint8
    assert not meta.get("audio_codec")


@pytest.mark.parametrize("name", ["in.gif", "in.MOV", "video-without-suffix"])
def test_any_video_ffmpeg_reads_is_read_whatever_its_name(tmp_path, name):
    """A restyle input is read by its content: a GIF, an upper-case suffix, no suffix (imageio's FFMPEG plugin
    alone would refuse what it does not know by name)."""
    given = frames(5)
    if name.endswith(".gif"):
        write_gif(given, tmp_path / name, 10)
    else:
        write_mp4(given, tmp_path / "v.mp4", 10)
        (tmp_path / "v.mp4").rename(tmp_path / name)
    got, fps = read_video_frames(tmp_path / name)
    assert len(got) == 5 and fps == 10 and count_frames(tmp_path / name) == 5


@pytest.mark.parametrize("fps", [20, 30, 12.5])
def test_gif_loops_and_its_frames_last_one_over_fps(tmp_path, fps):
    n = 7
    path = tmp_path / "v.gif"
    write_gif(frames(n), path, fps)
    with Image.open(path) as im:  # read by Pillow itself, not by the writer's code
        assert im.n_frames == n and im.info["loop"] == 0
        durations = []
        for i in range(n):
            im.seek(i)
            durations.append(im.info["duration"])
    assert all(abs(d - 1000 / fps) < 10 and d % 10 == 0 for d in durations), durations  # GIF counts in 10 ms
    assert abs(sum(durations) - n * 1000 / fps) <= 5  # the rate, not each frame's rounding, adds up
    assert len(list(iio.imiter(path, plugin="pillow"))) == n


def test_gif_durations_add_up_to_the_length():
    for n, fps in [(1, 30), (10, 30), (100, 29.97), (13, 7), (50, 100), (3, 200)]:
        d = gif_durations(n, fps)
        assert len(d) == n and all(x >= 10 and x % 10 == 0 for x in d)
        if fps <= 100:
            assert abs(sum(d) - n * 1000 / fps) <= 5


def test_gif_is_shrunk_to_its_max_side(tmp_path):
    write_gif(frames(3, w=64, h=32), tmp_path / "v.gif", 10, max_side=16)
    with Image.open(tmp_path / "v.gif") as im:
        assert im.size == (16, 8) and im.n_frames == 3
    write_gif(frames(3, w=64, h=32), tmp_path / "w.gif", 10, max_side=100)
    assert iio.improps(tmp_path / "w.gif", plugin="pillow", index=0).shape[:2] == (32, 64)


def test_write_video_from_pngs(tmp_path):
    paths = []
    for i, f in enumerate(frames(4)):
        paths.append(tmp_path / f"{i:06d}.png")
        Image.fromarray(f).save(paths[-1])
    for fmt in ("mp4", "gif"):
        out = write_video(paths, tmp_path / f"v.{fmt}", 8, fmt)
        assert len(list(iio.imiter(out, plugin="FFMPEG" if fmt == "mp4" else "pillow"))) == 4
    with pytest.raises(VqclipError, match="video format 'avi' is not supported"):
        write_video(paths, tmp_path / "v.avi", 8, "avi")


@pytest.mark.parametrize("writer", [write_mp4, write_gif])
def test_a_failed_write_leaves_nothing_behind(tmp_path, writer):
    def broken():
        yield from frames(3)
        raise RuntimeError("the run died")

    path = tmp_path / "v.mp4"
    path.write_bytes(b"the previous video")
    with pytest.raises(RuntimeError, match="the run died"):
        writer(broken(), path, 10)
    assert path.read_bytes() == b"the previous video" and sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    with pytest.raises(VqclipError, match="no frames to write"):
        writer(iter([]), tmp_path / "none.mp4", 10)
