"""Restyling a video: one output frame per input frame at the input's fps, audio carried over, temporal blending,
per-frame resume, and configs/restyle.yaml."""

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqclip.runs.callbacks import StopAfter
from vqclip.cli import main
from vqclip.files.jobyaml import load_yaml
from vqclip.errors import VqclipError
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.modes.restyle import fit_size, frame_to_tensor
from vqclip.files.video import mux_audio
from vqclip.runs.resume import resume_run
from vqclip.files.video import read_video_frames, write_mp4

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TONE_HZ, RATE = 660, 16000



def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_video(folder: Path, n: int = 6, fps: int = 6, size=(48, 32), audio: bool = True) -> Path:
    """A small test video: a bright square moving right over a gradient, optionally with a pure tone track."""
    w, h = size
    frames = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 2] = np.linspace(0, 200, w, dtype=np.uint8)[None, :]
        f[8:20, 4 + 6 * i: 16 + 6 * i] = (250, 240, 40)
        frames.append(f)
    silent = folder / "silent.mp4"
    write_mp4(frames, silent, fps)
    if not audio:
        return silent
    tone = folder / "tone.wav"
    t = np.arange(int(RATE * n / fps)) / RATE
    with wave.open(str(tone), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(RATE)
        wav.writeframes((np.sin(2 * np.pi * TONE_HZ * t) * 12000).astype("<i2").tobytes())
    out = folder / "input.mp4"
    mux_audio(silent, tone, out)
    return out


def decode_audio(path: Path) -> np.ndarray:
    """The first audio track of a file as mono int16 samples at RATE (empty when there is none)."""
    probe = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    if "Audio:" not in probe.stderr:
        return np.zeros(0, "<i2")
    done = subprocess.run([ffmpeg(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1",
                           "-ar", str(RATE), "-"], capture_output=True, check=True)
    return np.frombuffer(done.stdout, "<i2")


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[spectrum.argmax()])


def restyle_args(tiny_args, **over):
    args = [a for a in tiny_args if a not in ("--size", "32")]  # --size W H would ask for exactly that size
    return [*args, "--set", "size=32", "--seed", "2", "--steps", "2",
            *[x for k, v in over.items() for x in (f"--{k}", str(v))]]


def test_fit_size_and_frame_conversion():
    assert fit_size(48, 32, 32, 4) == (32, 20)  # aspect kept, multiples of 4
    assert fit_size(1920, 1080, 256, 16) == (256, 144)
    frame = np.zeros((30, 60, 3), np.uint8)
    frame[:, 30:] = 255
    t = frame_to_tensor(frame, (20, 20))  # cover + centre crop: the dark and bright halves stay
    assert t.shape == (1, 3, 20, 20) and t[..., :, :8].max() < 0.1 and t[..., :, 12:].min() > 0.9


def test_restyle_keeps_frames_fps_and_audio(tiny_args, tmp_path):
    video = make_video(tmp_path)
    src_audio = decode_audio(video)
    assert len(src_audio) > RATE // 2 and abs(dominant_hz(src_audio) - TONE_HZ) < 5
    out = tmp_path / "run"
    assert main(["restyle", str(video), "an oil painting", *restyle_args(tiny_args), "--size", "32", "32",
                 "--out", str(out)]) == 0
    frames, fps = read_video_frames(out / "restyled.mp4")
    assert len(frames) == 6 and fps == pytest.approx(6.0)
    assert frames[0].shape == (32, 32, 3)
    assert sorted(p.name for p in (out / "frames").iterdir()) == [f"{i:06d}.png" for i in range(6)]
    audio = decode_audio(out / "restyled.mp4")
    assert abs(len(audio) - len(src_audio)) < RATE * 0.1  # the whole track, not cut or padded
    assert abs(dominant_hz(audio) - TONE_HZ) < 5
    job = load_yaml(out / "job.yaml")
    assert job["restyle"]["input"] == str(video) and job["restyle"]["steps_per_frame"] == 2


def test_restyle_without_audio_and_with_aspect_kept(tiny_args, tmp_path):
    video = make_video(tmp_path, n=3, audio=False)
    out = tmp_path / "run"
    assert main(["restyle", str(video), "a watercolour", *restyle_args(tiny_args), "--out", str(out),
                 "--max-frames", "2", "--fps", "4"]) == 0
    frames, fps = read_video_frames(out / "restyled.mp4")
    assert len(frames) == 2 and fps == pytest.approx(4.0)
    assert frames[0].shape[:2] == (20, 32)  # long side 32, the 48x32 input's aspect
    assert len(decode_audio(out / "restyled.mp4")) == 0


def test_blend_carries_the_previous_output_into_the_next_frame(tiny_job, tmp_path):
    """With blend > 0 consecutive output frames are closer to each other than without it."""
    video = make_video(tmp_path, n=3, audio=False)

    def run(blend, name):
        cfg = build_config({"prompt": "a red circle", "seed": 1, "restyle": {"input": str(video), "blend": blend,
                            "steps_per_frame": 1}, "output": {"dir": str(tmp_path / name)}},
                           base=[("tiny", tiny_job)])
        frames = [np.asarray(Image.open(p), np.float64) for p in run_job(cfg).frames]
        return np.mean([np.abs(a - b).mean() for a, b in zip(frames, frames[1:])])

    assert run(0.9, "smooth") < run(0.0, "independent")


def test_stopped_restyle_resumes_to_the_same_frames(tiny_job, tmp_path):
    video = make_video(tmp_path, n=4, audio=True)
    job = {"prompt": "a red circle", "seed": 9, "restyle": {"input": str(video), "steps_per_frame": 2, "blend": 0.5}}
    whole = run_job(build_config({**job, "output": {"dir": str(tmp_path / "whole")}}, base=[("tiny", tiny_job)]))
    cut = run_job(build_config({**job, "output": {"dir": str(tmp_path / "cut")}}, base=[("tiny", tiny_job)]),
                  extra_callbacks=[StopAfter(3)])  # frame 0 done, frame 1 stopped half-way and dropped
    assert cut.interrupted and len(cut.frames) == 1
    resumed = resume_run(tmp_path / "cut")
    assert not resumed.interrupted and len(resumed.frames) == 4
    for a, b in zip(whole.frames, resumed.frames):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    assert len(decode_audio(resumed.video)) > 0
    with pytest.raises(VqclipError, match="already restyled"):
        resume_run(tmp_path / "cut")


def test_restyle_config_runs(tiny_job, tmp_path, monkeypatch):
    """configs/restyle.yaml (model: mini, input.mp4 in the working folder) with the tiny models swapped in."""
    make_video(tmp_path, n=2)
    monkeypatch.chdir(tmp_path)
    job = load_yaml(CONFIGS / "restyle.yaml")
    assert job.pop("model") == "mini" and job["restyle"]["input"] == "input.mp4"
    job.update({k: v for k, v in tiny_job.items() if k not in ("output", "size")})
    cfg = build_config({"restyle": {"steps_per_frame": 1}, "output": {"dir": "run", "progress": False}},
                       base=[("configs/restyle.yaml", job)])
    run = run_job(cfg)
    assert len(run.frames) == 2 and run.video.name == "restyled.mp4" and run.final.is_file()
    assert len(decode_audio(run.video)) > 0


def test_missing_video_is_a_one_line_error(tiny_args, tmp_path, capsys):
    assert main(["restyle", str(tmp_path / "nope.mp4"), "x", *restyle_args(tiny_args), "--out",
                 str(tmp_path / "r")]) == 2
    assert "no such video file" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_file_that_is_not_a_video_is_a_short_error_with_the_fix(tiny_args, tmp_path, capsys):
    (tmp_path / "notes.mp4").write_text("not a video")
    assert main(["restyle", str(tmp_path / "notes.mp4"), "x", *restyle_args(tiny_args), "--out",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.mp4: not a readable video" in err[0] and "ffmpeg version" not in err[0], err
    assert "give a video file" in err[0] and not (tmp_path / "r").exists()
