"""The `parameters` chunk names the drawer with its options and the looks that are on (palette, symmetry, tile), and no
VQGAN for a drawer that uses none; a pixel run with a palette re-runs as the same job from its final.png (`--from`,
the JSON chunk) and from its `parameters` chunk alone. Read back with the web UI's reader (tests/test_infotext.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vqclip.cli import main
from vqclip.config import merge_layers, to_dict
from vqclip.files.images import read_metadata
from vqclip.files.infotext import job_parameters

from test_infotext import a1111_read, png_with

LOOKS = ["--drawer", "pixel", "--set", "drawer.pixel_size=4", "--palette", "red,#1a2b3c,white", "--palette-hard",
         "--symmetry", "x", "--set", "symmetry.weight=0.5", "--tile"]


def chunk(layer: dict, vqgan: bool = True) -> dict:
    config = to_dict(merge_layers([("job", {"prompt": "a cat", "seed": 4, **layer})]))
    return a1111_read(job_parameters({"config": config, "seed": 4, "steps_done": config["steps"],
                                      "versions": {"vqclip": "9.9"}}, vqgan))[2]


def test_a_vqgan_job_names_no_drawer_and_no_looks():
    p = chunk({"vqgan": {"checkpoint": "/w/vq.ckpt"}})
    assert p["Model"] == "vq.ckpt"
    assert not {"Drawer", "Pixel size", "Decay", "Palette", "Palette weight", "Symmetry", "Tile"} & set(p)


def test_a_drawer_without_a_vqgan_names_the_drawer_its_options_and_no_vqgan():
    p = chunk({"drawer": {"name": "pixel", "pixel_size": 8}, "vqgan": {"checkpoint": "/w/vq.ckpt"}}, vqgan=False)
    assert (p["Drawer"], p["Pixel size"]) == ("pixel", "8") and "Decay" not in p
    assert "Model" not in p and "VQGAN" not in p and "vq.ckpt" not in str(p)
    p = chunk({"model": "mini", "drawer": {"name": "fft", "decay": 1.5}}, vqgan=False)
    assert (p["Model"], p["Drawer"], p["Decay"]) == ("mini", "fft", "1.5") and "VQGAN" not in p  # the preset only
    assert "Pixel size" not in p
    p = chunk({"model": "mini", "drawer": {"name": "fft", "cutoff": 0.25}}, vqgan=False)
    assert p["Cutoff"] == "0.25"  # the fft drawer's frozen-frequency bound


def test_an_fft_runs_decay_and_cutoff_come_back_from_its_parameters(tmp_path):
    from vqclip.runs.jobs import png_layer

    png = png_with(tmp_path / "f.png", parameters="a cat\nSteps: 3, Seed: 5, Drawer: fft, Decay: 1.5, Cutoff: 0.25, "
                                                  "Version: vqclip 9.9")
    assert png_layer(png)["drawer"] == {"name": "fft", "decay": 1.5, "cutoff": 0.25}
    assert chunk({"model": "mini", "vqgan": {"checkpoint": "/w/vq.ckpt"}})["VQGAN"] == "vq.ckpt"  # a VQGAN job's


def test_the_looks_that_are_on_are_named_with_their_values():
    p = chunk({"palette": {"colors": ["red", "#1a2b3c"], "weight": 2, "hard": True}, "symmetry": {"axes": ["x", "y"]},
               "tile": True})
    assert (p["Palette"], p["Palette weight"], p["Palette hard"]) == ("red, #1a2b3c", "2", "true")
    assert (p["Symmetry"], p["Symmetry weight"], p["Tile"]) == ("x, y", "1", "true")
    p = chunk({"palette": {"image": "/pics/sunset.png", "size": 5}})
    assert (p["Palette image"], p["Palette size"], p["Palette weight"]) == ("sunset.png", "5", "1")
    assert "Palette hard" not in p and "Palette" not in p
    off = chunk({"palette": {"weight": 3, "size": 4}, "symmetry": {"weight": 2}})  # no colours, no axes: off
    assert not {"Palette weight", "Palette size", "Symmetry weight", "Tile"} & set(off)


@pytest.fixture(scope="module")
def pixel_run(tiny_args, tmp_path_factory):
    out = tmp_path_factory.mktemp("looks") / "run"
    assert main(["generate", "a red circle", *tiny_args, "--size", "16", "16", "--cutn", "2", "--steps", "2",
                 "--seed", "3", "--no-video", *LOOKS, "--out", str(out)]) == 0
    return out


def _job(folder) -> dict:
    return {k: v for k, v in read_metadata(folder / "final.png")["config"].items() if k != "output"}


def test_a_pixel_runs_final_png_says_its_drawer_and_looks_and_no_vqgan(pixel_run):
    with Image.open(pixel_run / "final.png") as im:
        p = a1111_read(im.text["parameters"])[2]
    assert (p["Drawer"], p["Pixel size"], p["Palette"], p["Palette hard"]) == ("pixel", "4", "red, #1a2b3c, white",
                                                                               "true")
    assert (p["Symmetry"], p["Symmetry weight"], p["Tile"]) == ("x", "0.5", "true")
    assert "Model" not in p and "VQGAN" not in p


def test_from_a_pixel_runs_final_png_reruns_the_same_job_and_image(pixel_run, tmp_path):
    assert main(["generate", "--from", str(pixel_run / "final.png"), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert _job(tmp_path / "again") == _job(pixel_run)
    again = np.asarray(Image.open(tmp_path / "again" / "final.png").convert("RGB"))
    assert np.array_equal(again, np.asarray(Image.open(pixel_run / "final.png").convert("RGB")))


def test_from_the_parameters_chunk_alone_takes_the_drawer_and_the_looks(pixel_run, tiny_args, tmp_path):
    with Image.open(pixel_run / "final.png") as im:
        text = im.text["parameters"]
    png = png_with(tmp_path / "p.png", parameters=text)  # the JSON chunk gone: an image browser re-saved it
    at = tiny_args.index("--size")
    models = tiny_args[:at] + tiny_args[at + 3:]  # the size comes from the PNG
    assert main(["generate", "--from", str(png), *models, "--cutn", "2", "--out", str(tmp_path / "r"),
                 "--no-video"]) == 0
    job, ran = _job(tmp_path / "r"), _job(pixel_run)
    for key in ("drawer", "symmetry", "tile", "size", "seed", "steps"):
        assert job[key] == ran[key], key
    assert {k: v for k, v in job["palette"].items()} == ran["palette"]


@pytest.mark.parametrize("pair, expected", [
    ("Pixel size: eight", "its parameters say Pixel size: 'eight', not a drawer.pixel_size value"),
    ("Palette hard: yes", "its parameters say Palette hard: 'yes', not a palette.hard value"),
    ("Drawer: nosuch", "nosuch"),
    ("Symmetry: z", "symmetry.axes"),
])
def test_a_bad_look_in_a_vqclip_chunk_is_one_line_and_exit_2(tmp_path, capsys, pair, expected):
    png = png_with(tmp_path / "bad.png", parameters=f"a cat\nSteps: 3, Seed: 5, {pair}, Version: vqclip 9.9")
    assert main(["generate", "--from", str(png), "--model", "mini", "--out", str(tmp_path / "r")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "r").exists()


def test_another_tools_chunk_gives_no_looks(tiny_args, tmp_path):
    png = png_with(tmp_path / "a.png", parameters="a cat\nSteps: 20, Seed: 5, Size: 16x16, Tile: true, "
                                                  "Drawer: pixel, Version: v1.6.0")
    assert main(["generate", "--from", str(png), *tiny_args, "--cutn", "2", "--steps", "1", "--size", "16", "16",
                 "--out", str(tmp_path / "r"), "--no-video"]) == 0
    job = _job(tmp_path / "r")
    assert job["tile"] is False and job["drawer"]["name"] == "vqgan"
