"""More of vqclip/files/video.py, read back by ffmpeg: the audio mux (all of the track, or the first seconds), a GIF
shrunk only past its max side, and the one-line refusals (no frames, an unknown format, a video ffmpeg cannot read,
a source without audio)."""

from __future__ import annotations

import wave

import numpy as np
import pytest
from PIL import Image

from vqclip.errors import VqclipError
from vqclip.files.video import count_frames, mux_audio, open_video, write_gif, write_mp4, write_video

from test_restyle import RATE, decode_audio
from test_video import frames


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A 12-frame 6 fps silent mp4 (2 s) and a 2 s 440 Hz tone."""
    folder = tmp_path_factory.mktemp("mux")
    write_mp4(frames(12), folder / "silent.mp4", 6)
    t = np.arange(RATE * 2) / RATE
    with wave.open(str(folder / "tone.wav"), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(RATE)
        wav.writeframes((np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2").tobytes())
    return folder


@pytest.mark.parametrize("seconds, length", [(None, 2.0), (0.5, 0.5)])
def test_the_audio_is_carried_over_whole_or_for_the_seconds_asked(sources, tmp_path, seconds, length):
    out = tmp_path / "out.mp4"
    mux_audio(sources / "silent.mp4", sources / "tone.wav", out, seconds)
    assert abs(len(decode_audio(out)) / RATE - length) < 0.1
    assert count_frames(out) == 12  # the video is never cut
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_a_source_without_audio_is_one_line_and_nothing_is_left(sources, tmp_path):
    with pytest.raises(VqclipError, match=r"could not carry its audio over .*set restyle\.audio: false") as info:
        mux_audio(sources / "silent.mp4", sources / "silent.mp4", tmp_path / "out.mp4")
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []


def test_a_gif_is_shrunk_only_past_its_max_side(tmp_path):
    given = frames(2, 40, 20)
    for side, size in ((40, (40, 20)), (41, (40, 20)), (39, (39, 20)), (10, (10, 5))):
        write_gif(given, tmp_path / "g.gif", 10, side)
        with Image.open(tmp_path / "g.gif") as im:
            assert im.size == size, side


def test_nothing_to_write_or_an_unknown_format_is_one_line_and_writes_nothing(tmp_path):
    for write in (write_mp4, write_gif):
        with pytest.raises(VqclipError, match="no frames to write"):
            write(iter([]), tmp_path / "v.out", 10)
    Image.new("RGB", (8, 8)).save(tmp_path / "f.png")
    with pytest.raises(VqclipError, match="video format 'webm' is not supported; use mp4 or gif"):
        write_video([tmp_path / "f.png"], tmp_path / "v.webm", 10, "webm")
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_a_missing_or_unreadable_video_is_one_line(tmp_path):
    with pytest.raises(VqclipError, match="no such video file"):
        open_video(tmp_path / "gone.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\0" * 64)
    with pytest.raises(VqclipError, match="not a readable video") as info:
        open_video(tmp_path / "bad.mp4")
    assert "\n" not in str(info.value)
