"""What a restyle does with each input frame, checked against the documented rule: frame i is seeded with seed + i,
starts from encode((1 - blend) x input frame + blend x the previous output as saved, 8-bit), runs steps_per_frame
steps with the LR schedule over them and the story's clock at the frame index; the frame rate, audio, size and step
counts the pipeline asks the mode for."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.files.images import save_png
from vqclip.files.video import read_video_frames, write_mp4
from vqclip.modes.restyle import Restyle, fit_size, frames_done
from vqclip.nets.vqgan import VQGAN
from vqclip.optim.objective import Objective, decode_image
from vqclip.optim.state import RunState
from vqclip.runs.callbacks import StopAfter
from vqclip.runs.pipeline import generate

SEED, BLEND, LR = 7, 0.7, 0.1


def make_video(path: Path, n: int, size=(32, 32), fps: int = 5) -> Path:
    """n frames of a square moving over a gradient, silent."""
    w, h = size
    frames = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 2] = np.linspace(0, 200, w, dtype=np.uint8)[None, :]
        f[6:18, 2 + 5 * i: 14 + 5 * i] = (250, 240, 40)
        frames.append(f)
    write_mp4(frames, path, fps)
    return path


class Folder:
    """A frame sink that writes PNGs into a folder, as the run folder does."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def write(self, index, image):
        return save_png(image, self.path / f"{index:06d}.png")

    def existing(self):
        return sorted(self.path.glob("*.png"))


def png(path: Path) -> torch.Tensor:
    """An 8-bit PNG as [1,3,H,W] in [0,1], read with PIL."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]


def restyle_job(tiny_job, video, **over):
    return merge_layers([("tiny", tiny_job), ("t", {
        "prompt": "a red cat ^ a blue dog", "seed": SEED, "cutouts": {"n": 2},
        "optimizer": {"lr": LR, "schedule": "linear", "min_factor": 0.5},
        "restyle": {"input": str(video), "steps_per_frame": 2, "blend": BLEND}, **over})])


@pytest.fixture(scope="module")
def restyled(tiny_job, tiny_models, tmp_path_factory):
    """A 3-frame restyle with its encoder inputs, seeds, learning rates, prompt weights and events recorded."""
    tmp = tmp_path_factory.mktemp("restyle")
    video = make_video(tmp / "in.mp4", 3)
    cfg = restyle_job(tiny_job, video)
    seen = {"encode": [], "lr": [], "weights": [], "events": []}
    encode, set_lr, weights_at = VQGAN.encode, RunState.set_lr, Objective.weights_at

    def spy_encode(self, x):
        z = encode(self, x)
        seen["encode"].append((x.detach().clone(), torch.initial_seed(), z.detach().clone()))
        return z

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VQGAN, "encode", spy_encode)
        mp.setattr(RunState, "set_lr", lambda self, lr: seen["lr"].append(lr) or set_lr(self, lr))
        mp.setattr(Objective, "weights_at", lambda self, s: seen["weights"].append(weights_at(self, s).tolist())
                   or weights_at(self, s))
        result = generate(cfg, tiny_models, [seen["events"].append], frames=Folder(tmp / "frames"))
    inputs, _ = read_video_frames(video)  # ffmpeg reading the input back: what the restyle was given
    return result, seen, [torch.from_numpy(f.astype(np.float32) / 255).permute(2, 0, 1)[None] for f in inputs]


def test_each_frame_starts_from_the_blend_of_its_input_and_the_saved_previous_frame(restyled):
    result, seen, inputs = restyled
    assert len(seen["encode"]) == 3 and len(result.frames) == 3
    for i, (start, _, _) in enumerate(seen["encode"]):
        expected = inputs[i] if i == 0 else (1 - BLEND) * inputs[i] + BLEND * png(result.frames[i - 1])
        torch.testing.assert_close(start, expected, rtol=0, atol=1e-6)  # the 8-bit frame: 1/510 off the float one


def test_frame_i_is_seeded_with_seed_plus_i_and_starts_from_its_encoding(restyled, tiny_models):
    result, seen, _ = restyled
    assert [seed for _, seed, _ in seen["encode"]] == [SEED, SEED + 1, SEED + 2]
    firsts = [e for e in seen["events"] if e.step == 0]
    assert [e.frame for e in firsts] == [0, 1, 2]
    for event, (_, _, z) in zip(firsts, seen["encode"]):  # the image scored first is the encoded start's
        torch.testing.assert_close(event.image, decode_image(tiny_models.vqgan, z), rtol=0, atol=1e-5)


def test_each_frame_runs_its_steps_with_the_lr_schedule_over_them(restyled):
    result, seen, _ = restyled
    assert [(e.frame, e.step, e.total) for e in seen["events"]] == [(i, s, 2) for i in range(3) for s in range(2)]
    assert seen["lr"] == pytest.approx([LR, LR * (1 - 0.5 * 0.5)] * 3)  # linear to min_factor 0.5 over 2 steps
    assert result.steps == 6 and not result.stopped and result.info == {"frames_done": 3}
    assert result.losses == pytest.approx([e.loss for e in seen["events"][-2:]])  # the last frame's curve
    assert [p.name for p in result.frames] == ["000000.png", "000001.png", "000002.png"]
    assert torch.equal(result.image, png(result.frames[-1]))


def test_a_story_in_a_restyle_counts_input_frames(restyled):
    """'a ^ b' over 3 frames: keyframes at frames 0 and round(3 / 2) = 2, whatever the step within the frame."""
    _, seen, _ = restyled
    assert seen["weights"] == [[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 2


class FakeVideo:
    """An input video held in memory (ffmpeg is tested with the run above): 3 frames of 48x32 at 6 fps."""

    meta = {"size": (48, 32), "fps": 6.0}

    def __init__(self, n: int = 3):
        g = np.random.default_rng(0)
        self.frames = [g.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(n)]

    def open(self, path):
        reader = type("Reader", (), {"close": lambda self: None})()
        return reader, iter(self.frames), dict(self.meta)


@pytest.fixture
def video3(monkeypatch):
    video = FakeVideo()
    monkeypatch.setattr("vqclip.modes.restyle.open_video", video.open)
    monkeypatch.setattr("vqclip.modes.rules.count_frames", lambda path: len(video.frames))  # the one frame count
    return "in.mp4"


@pytest.mark.parametrize("stop, frames", [(3, 1), (4, 2), (5, 2)])
def test_a_stop_keeps_the_finished_frames_and_drops_a_half_made_one(tiny_job, tiny_models, video3, tmp_path, stop,
                                                                    frames):
    """Stopped after the last step of frame 1 (4 steps of 2 per frame), both frames are kept; one step earlier or
    later, the frame being made is dropped (resume makes it again)."""
    cfg = restyle_job(tiny_job, video3, size=[16, 16])
    result = generate(cfg, tiny_models, [StopAfter(stop)], frames=Folder(tmp_path))
    assert result.stopped and len(result.frames) == frames and result.steps == 2 * frames
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i:06d}.png" for i in range(frames)]


@pytest.mark.parametrize("max_frames, made", [(2, 2), (3, 3)])
def test_max_frames_caps_the_frames_restyled(tiny_job, tiny_models, video3, tmp_path, max_frames, made):
    cfg = restyle_job(tiny_job, video3, size=[16, 16])
    cfg = replace(cfg, restyle=replace(cfg.restyle, max_frames=max_frames, steps_per_frame=1))
    result = generate(cfg, tiny_models, frames=Folder(tmp_path))
    assert len(result.frames) == made and result.steps == made and not result.stopped


def test_a_restyle_stopped_before_its_first_frame_or_without_a_folder_is_one_line(tiny_job, tiny_models, video3,
                                                                                 tmp_path):
    cfg = restyle_job(tiny_job, video3, size=[16, 16])
    with pytest.raises(VqclipError, match="no frame was restyled \\(stopped before the first one finished\\)"):
        generate(cfg, tiny_models, [StopAfter(1)], frames=Folder(tmp_path))
    with pytest.raises(VqclipError, match="writes its frames into a run folder"):
        generate(cfg, tiny_models)


def test_prepare_keeps_the_aspect_and_caps_the_frames(tiny_job, tiny_models, video3):
    """The 48x32 input: long side max(size) with its aspect, in multiples of the VQGAN factor (keep_aspect), or the
    size asked for; max_frames caps the frames (0: all); total and resumed steps count steps_per_frame per frame."""
    factor, job = tiny_models.vqgan.factor, restyle_job(tiny_job, video3, size=[32, 32])
    for over, size, n in [({}, [32, 20], 3), ({"keep_aspect": False}, [32, 32], 3), ({"max_frames": 2}, [32, 20], 2),
                          ({"max_frames": 3}, [32, 20], 3), ({"max_frames": 4}, [32, 20], 3)]:
        cfg = replace(job, restyle=replace(job.restyle, **over))
        mode = Restyle()
        out = mode.prepare(cfg, tiny_models)
        assert list(out.size) == size and mode.frames_total == n and mode.total(out) == 2 * n, over
        assert all(s % factor == 0 for s in out.size)
    assert fit_size(48, 32, 64, 16) == (64, 48)  # 42.67 rounds to 48, the nearest multiple of 16
    assert fit_size(32, 48, 64, 16) == (48, 64) and fit_size(300, 10, 64, 16) == (64, 16)  # never below the factor


def test_a_shorthand_story_longer_than_the_video_is_refused_before_the_run(tiny_job, tiny_models, video3):
    """In a restyle the story's parts are spread over input frames: 4 parts over 3 frames is an error naming the
    frames, raised by prepare (before a run folder is made); 3 parts over 3 frames run."""
    cfg = restyle_job(tiny_job, video3, prompt="a ^ b ^ c ^ d")
    with pytest.raises(VqclipError, match=r"^prompt 'a \^ b \^ c \^ d' has 4 story parts but 3 input frames to "
                                          "spread them over; give at least 4 input frames or set change_every$"):
        Restyle().prepare(cfg, tiny_models)
    Restyle().prepare(restyle_job(tiny_job, video3, prompt="a ^ b ^ c"), tiny_models)
    Restyle().prepare(replace(cfg, change_every=1), tiny_models)


def test_frames_done_counts_the_frames_before_the_first_gap():
    names = lambda *i: [Path(f"frames/{k:06d}.png") for k in i]  # noqa: E731
    assert frames_done(names(0, 1, 3)) == 2 and frames_done(names(1, 2)) == 0 and frames_done(names(0, 1, 2)) == 3
    cfg = merge_layers([("t", {"prompt": "x", "restyle": {"input": "in.mp4", "steps_per_frame": 5}})])
    assert Restyle().steps_done(cfg, names(0, 1, 3)) == 10


def test_fps_and_audio_follow_the_settings_and_the_input():
    """fps: frames / video_length when set, else restyle.fps, else the input's; the audio is the input's when it has a
    track and restyle.audio is on."""
    mode = Restyle()
    mode.meta = {"fps": 24.0, "size": (48, 32), "audio_codec": "aac"}
    cfg = merge_layers([("t", {"prompt": "x", "restyle": {"input": "in.mp4"}})])
    with_fps = replace(cfg, restyle=replace(cfg.restyle, fps=12.0))
    assert mode.fps(cfg, 10) == 24.0 and mode.fps(with_fps, 10) == 12.0
    assert mode.fps(replace(with_fps, output=replace(cfg.output, video_length=2.0)), 10) == 5.0
    assert mode.audio(cfg) == Path("in.mp4")
    assert mode.audio(replace(cfg, restyle=replace(cfg.restyle, audio=False))) is None
    mode.meta = {"fps": 24.0, "size": (48, 32)}  # a silent input
    assert mode.audio(cfg) is None
    assert mode.frame_every(cfg) == 0 and not mode.saves_state and not mode.final_frame
    assert mode.video_name == "restyled"
