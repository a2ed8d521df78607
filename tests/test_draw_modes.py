"""The pixel and fft drawers in every mode, through the command on the tiny CLIP with no VQGAN named: a still run
(its size rounded by the drawer's factor), a run stopped and resumed (bit-identical to the uninterrupted one), a story
with a fade and best of n, a zoom from an init image, a restyle; no VQGAN is resolved, fetched or loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_restyle import make_video
from vqclip.cli import main

SIZE = {"pixel": (36, 24), "fft": (36, 22)}  # --size 36 22: pixel_size 4 rounds it to 36x24 (8: 32x24); fft's is 1


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def no_vqgan(*args, **kwargs):
    raise AssertionError("a job whose drawer uses no VQGAN loaded one")


@pytest.fixture(scope="module", params=["pixel", "fft"])
def runs(request, tiny_clip, tmp_path_factory):
    """Every mode's run folder for one drawer (name -> folder), made once with no VQGAN loadable."""
    drawer, root = request.param, tmp_path_factory.mktemp(f"draw-{request.param}")
    clip = ["--clip-model", str(tiny_clip[0]), "--clip-pretrained", str(tiny_clip[1])]
    common = [*clip, "--size", "36", "22", "--cutn", "2", "--seed", "5", "--quiet", "--no-video", "--threads", "1",
              "--drawer", drawer, "--set", "drawer.pixel_size=4"]
    image = root / "init.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 3))).save(image)
    video = make_video(root, n=3, size=(32, 32), audio=False)
    out = {k: root / k for k in ("still", "part", "story", "zoom", "restyle")}
    commands = [
        ["generate", "a red circle", *common, "--steps", "4", "--save-every", "2", "--out", str(out["still"])],
        ["generate", "a red circle", *common, "--steps", "2", "--set", "state_every=1", "--out", str(out["part"])],
        ["resume", str(out["part"]), "--steps", "4", "--quiet", "--threads", "1"],
        ["generate", "a red circle ^ a blue square", *common, "--steps", "4", "--candidates", "2", "--set",
         "candidates.views=2", "--set", "story_fade=0.5", "--save-every", "0", "--out", str(out["story"])],
        ["zoom", "a red circle", *common, "--init-image", str(image), "--frames", "3", "--every", "2", "--zoom", "1.2",
         "--out", str(out["zoom"])],
        ["restyle", str(video), "a red circle", *common, "--steps", "2", "--max-frames", "2", "--out",
         str(out["restyle"])],
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VQCLIP_HOME", str(root / "home"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr("vqclip.nets.load.load_vqgan", no_vqgan)
        codes = [main(argv) for argv in commands]
    return drawer, out, codes


def test_every_mode_runs_without_a_vqgan(runs):
    _, _, codes = runs
    assert codes == [0] * 6


def test_the_still_image_has_the_size_rounded_by_the_drawers_factor_and_its_frames(runs):
    drawer, out, _ = runs
    assert Image.open(out["still"] / "final.png").size == SIZE[drawer]
    assert sorted(p.name for p in (out["still"] / "frames").glob("*.png")) == [f"{i:06d}.png" for i in (0, 2, 4)]


def test_a_pixel_image_is_one_colour_on_each_pixel_size_block(runs):
    drawer, out, _ = runs
    image = pixels(out["still"] / "final.png")
    blocks = (image if drawer == "pixel" else image[:20]).reshape(-1, 4, 36 // 4, 4, 3)
    same = (blocks == blocks[:, :1, :, :1]).all()
    assert same if drawer == "pixel" else not same  # fft draws every pixel on its own


def test_a_stopped_run_resumed_ends_as_the_uninterrupted_one(runs):
    _, out, _ = runs
    assert np.array_equal(pixels(out["part"] / "final.png"), pixels(out["still"] / "final.png"))


def test_a_story_with_a_fade_and_best_of_n_makes_its_image(runs):
    drawer, out, _ = runs
    assert Image.open(out["story"] / "final.png").size == SIZE[drawer]


def test_a_zoom_from_an_init_image_moves_every_frame(runs):
    drawer, out, _ = runs
    frames = sorted((out["zoom"] / "frames").glob("*.png"))
    assert len(frames) == 3 and Image.open(out["zoom"] / "final.png").size == SIZE[drawer]
    first = pixels(frames[0]).astype(float)
    assert first[:, -4:].mean() > first[:, :4].mean() + 60  # the init image's left-to-right ramp is the start


def test_a_restyle_makes_a_frame_per_input_frame(runs):
    drawer, out, _ = runs
    frames = sorted((out["restyle"] / "frames").glob("*.png"))
    assert len(frames) == 2 and Image.open(frames[-1]).size == SIZE[drawer]  # --size given: exactly it, rounded


def test_a_pixel_job_on_a_preset_whose_vqgan_is_not_here_runs_where_a_vqgan_job_cannot(tiny_clip, tmp_path, offline_hub,
                                                                                        capsys):
    clip = ["--clip-model", str(tiny_clip[0]), "--clip-pretrained", str(tiny_clip[1])]
    job = ["generate", "a red circle", *clip, "--size", "16", "16", "--cutn", "1", "--steps", "1", "--quiet",
           "--no-video"]
    assert main([*job, "--out", str(tmp_path / "v")]) == 2  # the default preset's VQGAN: not downloaded, offline
    assert "could not download 2 files" in capsys.readouterr().err
    assert main([*job, "--drawer", "pixel", "--out", str(tmp_path / "p")]) == 0
    assert Image.open(tmp_path / "p" / "final.png").size == (16, 16)


def test_an_unknown_drawer_on_the_command_line_is_one_line_and_exit_2(tiny_args, tmp_path, capsys):
    assert main(["generate", "x", *tiny_args, "--drawer", "rgb", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rgb" in err and "vqgan, pixel, fft" in err
    assert not (tmp_path / "r").exists()


def test_the_python_api_takes_the_drawer_as_a_keyword(tiny_vqgan, tiny_clip):
    import vqclip

    pipe = vqclip.Pipeline.from_files(*tiny_vqgan, clip={"model": str(tiny_clip[0]), "pretrained": str(tiny_clip[1])},
                                      device="cpu")
    out = pipe("a red circle", drawer={"name": "pixel", "pixel_size": 4}, steps=1, size=[16, 12], seed=0,
               cutouts={"n": 1})
    image = np.asarray(out.images[0].convert("RGB"))
    blocks = image.reshape(3, 4, 4, 4, 3)
    assert image.shape == (12, 16, 3) and (blocks == blocks[:, :1, :, :1]).all()
    assert tuple(out.latents.shape) == (1, 3, 3, 4)  # the grid the pixel drawer optimised
