"""The looks a job asks for (palette, symmetry, tile) from the command line to final.png: a hard palette makes every
pixel of final.png and of the frames one of its colours, exactly (named colours, or an image's); the soft palette and
the symmetry term move a run's image their way; the keys' checks refuse exactly past each boundary, one line each,
exit 2; the page takes a palette image only as an upload."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vqclip.cli import build_parser, main
from vqclip.cli.options import cli_overrides
from vqclip.config import merge_layers
from vqclip.config.checks import check_inputs
from vqclip.errors import VqclipError
from vqclip.ui.jobs import check_safe

from runs import Run

HEX = "0123456789abcdef" * 2


def pixels(path) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in p) for p in np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)}


@pytest.fixture(scope="module")
def hard_runs(tiny_args, tmp_path_factory):
    """A tiny run snapped to three named colours (frames every step) and one to an image's two colours."""
    tmp = tmp_path_factory.mktemp("looks")
    art = np.zeros((16, 16, 3), np.uint8)
    art[:, :8], art[:, 8:] = (10, 200, 30), (250, 120, 240)
    Image.fromarray(art).save(tmp / "art.png")
    common = ["generate", "a red circle", *tiny_args, "--steps", "3", "--seed", "2", "--no-video", "--palette-hard"]
    named, from_image = tmp / "named", tmp / "image"
    assert main([*common, "--palette", "red,#1a2b3c,yellow", "--save-every", "1", "--out", str(named)]) == 0
    assert main([*common, "--palette-image", str(tmp / "art.png"), "--out", str(from_image)]) == 0
    return named, from_image


def test_a_hard_palette_makes_every_pixel_of_final_png_and_of_the_frames_a_palette_colour(hard_runs):
    named, from_image = hard_runs
    frames = sorted(named.rglob("*.png"))
    assert len(frames) >= 4  # final.png and the frames of steps 0..3
    for png in frames:
        assert pixels(png) <= {(255, 0, 0), (26, 43, 60), (255, 255, 0)}, png
    assert pixels(from_image / "final.png") <= {(10, 200, 30), (250, 120, 240)}


@pytest.fixture(scope="module")
def finals(tiny_job, tiny_models):
    """The final image of one tiny job without a look, with a strong soft palette, with strong x-y symmetry."""
    out = {}
    for name, over in (("plain", {}), ("palette", {"palette": {"colors": ["red", "#10e0a0", "navy"], "weight": 50}}),
                       ("symmetry", {"symmetry": {"axes": ["x", "y"], "weight": 50}})):
        cfg = merge_layers([("tiny", tiny_job), ("t", {"prompt": "a red circle", "steps": 8, "seed": 1,
                                                       "cutouts": {"n": 2}, "optimizer": {"lr": 1.0}, **over})])
        run = Run(cfg, tiny_models, seed=1)
        for _ in range(8):
            run.step()
        out[name] = run.decode().detach()[0]
    return out


def test_a_soft_palette_brings_the_pixels_nearer_the_palette(finals):
    pal = torch.tensor([[255, 0, 0], [16, 224, 160], [0, 0, 128]]) / 255

    def distance(image):  # mean distance of each pixel to its nearest palette colour, written out here
        flat = image.reshape(3, -1).T
        return torch.stack([(flat - c).pow(2).sum(1).sqrt() for c in pal], 1).min(1).values.mean().item()

    assert distance(finals["palette"]) < distance(finals["plain"]) - 0.005


def test_the_symmetry_term_makes_the_image_nearer_its_mirror_images(finals):
    def mirror(image):
        return ((image - image.flip(2)).abs().mean() + (image - image.flip(1)).abs().mean()).item()

    assert mirror(finals["symmetry"]) < mirror(finals["plain"]) - 0.02


@pytest.mark.parametrize("over, message", [
    ({"palette": {"colors": ["red", "blurple"]}}, "palette.colors: 'blurple' is no colour"),
    ({"palette": {"colors": ["red"], "size": 0}}, "palette.size: must be >= 1"),
    ({"palette": {"colors": ["red"], "weight": -0.001}}, "palette.weight: must be >= 0"),
    ({"palette": {"hard": True}}, "palette.hard: there is no palette to snap to"),
    ({"symmetry": {"axes": ["x", "z"]}}, "symmetry.axes: unknown value 'z'; use one of x, y"),
    ({"symmetry": {"axes": ["x"], "weight": -0.001}}, "symmetry.weight: must be >= 0"),
])
def test_impossible_looks_are_one_line_naming_the_key(over, message):
    with pytest.raises(VqclipError) as exc:
        merge_layers([("t", {"prompt": "a", **over})])
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_the_boundaries_themselves_are_accepted(tmp_path):
    for over in ({"palette": {"colors": ["red"], "size": 1, "weight": 0.0}}, {"palette": {"image": "x.png",
                 "hard": True}}, {"symmetry": {"axes": ["x", "y"], "weight": 0.0}}, {"symmetry": {"axes": ["y"]}},
                 {"palette": {"colors": [], "hard": False}}):
        merge_layers([("t", {"prompt": "a", **over})])
    cfg = merge_layers([("t", {"prompt": "a", "palette": {"image": str(tmp_path / "none.png")}})])
    with pytest.raises(VqclipError, match="palette.image: .*none.png"):
        check_inputs(cfg)  # a palette image that is not there fails before the run


def test_the_flags_set_the_keys_and_a_bad_colour_exits_2_in_one_line(tiny_args, tmp_path, capsys):
    assert main(["generate", "a", *tiny_args, "--palette", "blurple", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "palette.colors: 'blurple' is no colour" in err and "\n" not in err and not (tmp_path / "x").exists()
    assert main(["generate", "a", *tiny_args, "--symmetry", "x,z", "--out", str(tmp_path / "y")]) == 2
    assert "symmetry.axes: unknown value 'z'" in capsys.readouterr().err
    args = build_parser().parse_args(["generate", "a", "--palette", "red, #1a2b3c", "--palette-hard",
                                      "--symmetry", "x,y", "--tile"])
    over = cli_overrides(args)
    assert over["palette"] == {"colors": ["red", "#1a2b3c"], "hard": True}
    assert over["symmetry"] == {"axes": ["x", "y"]} and over["tile"] is True
    assert "tile" not in cli_overrides(build_parser().parse_args(["generate", "a"]))


def test_the_page_takes_a_palette_image_only_as_an_upload():
    def upload(upload_id):
        return f"/srv/uploads/{upload_id}.png"

    assert check_safe({"palette": {"image": f"upload:{HEX}"}}, upload) == {
        "palette": {"image": f"/srv/uploads/{HEX}.png"}}
    with pytest.raises(VqclipError, match="palette.image: the page can use only images uploaded"):
        check_safe({"palette": {"image": "/etc/passwd"}}, upload)
    assert check_safe({"palette": {"image": None}}, upload) == {"palette": {"image": None}}
