"""The 3D camera's checks (vqclip/config/checks.py `_check_camera`), at every boundary, both sides: fov in (0, 180),
near > 0 and below far, depth_size a positive multiple of 14, and 3D values only in a zoom video; each refusal one
line naming the key, and exit code 2 from the command line before any run folder is made."""

from __future__ import annotations

import pytest

from test_checks import job, refused
from vqclip.cli import main
from vqclip.config import check

ZOOM = {"animation.mode": "zoom"}

# (key, other settings, values at or inside the limits, the first values past them, message start)
BOUNDARIES = [
    ("animation.fov", ZOOM, [0.001, 40.0, 179.999], [0.0, -1.0, 180.0, 181.0],
     "animation.fov: must be in (0, 180) degrees"),
    ("animation.near", {**ZOOM, "animation.far": 10.0}, [1e-6, 1.0, 9.999], [0.0, -1.0],
     "animation.near: must be > 0"),
    ("animation.near", {**ZOOM, "animation.far": 10.0}, [9.999], [10.0, 10.001],
     "animation.near: must be below animation.far (10.0)"),
    ("animation.far", {**ZOOM, "animation.near": 10.0}, [10.001, 1e9], [10.0, 9.0],
     "animation.near: must be below animation.far"),
    ("animation.depth_size", ZOOM, [14, 28, 518], [0, -14, 13, 15, 16, 516, 517, 519, 520],
     "animation.depth_size: must be a positive multiple of 14"),
]


@pytest.mark.parametrize("key, other, good, bad, message", BOUNDARIES, ids=[f"{r[0]}-{i}" for i, r in
                                                                           enumerate(BOUNDARIES)])
def test_each_camera_limit_is_accepted_and_the_first_value_past_it_refused(key, other, good, bad, message):
    for value in good:
        check(job(**other, **{key: value}))
    for value in bad:
        text = refused(job(**other, **{key: value}))
        assert text.startswith(message), (value, text)


@pytest.mark.parametrize("key", ["translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z"])
@pytest.mark.parametrize("value", [1.0, -0.5, "0:0, 10:2"])
def test_a_3d_value_outside_a_zoom_video_is_refused_naming_it(key, value):
    """Set anywhere (a key frame included) without animation.mode: zoom: refused; in a zoom it runs; 0 everywhere is
    no 3D move and stays allowed in any mode."""
    text = refused(job(**{f"animation.{key}": value}))
    assert text.startswith(f"animation.{key}: the 3D camera moves a zoom video, but this job is a still image")
    assert "set animation.mode: zoom" in text
    restyle = refused(job(**{f"animation.{key}": value, "restyle.input": "in.mp4"}))
    assert restyle.startswith(f"animation.{key}: the 3D camera moves a zoom video, but this job is a restyle")
    check(job(**ZOOM, **{f"animation.{key}": value}))
    check(job(**{f"animation.{key}": "0:0, 10:0"}))


def test_a_bad_key_framed_3d_value_names_its_key():
    text = refused(job(**ZOOM, **{"animation.rotation_3d_y": "0:1, x"}))
    assert "animation.rotation_3d_y" in text


@pytest.mark.parametrize("args, key", [
    (["--translation-z", "5", "--fov", "180"], "animation.fov"),
    (["--rotation-3d-x", "2", "--set", "animation.near=300", "--set", "animation.far=300"], "animation.near"),
])
def test_the_command_line_refuses_in_one_line_with_exit_2_and_no_run_folder(tiny_args, tmp_path, capsys, args, key):
    assert main(["zoom", "x", *tiny_args, *args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0], err
    assert not (tmp_path / "r").exists()


def test_a_3d_value_given_to_generate_is_refused(tiny_args, tmp_path, capsys):
    assert main(["generate", "x", *tiny_args, "--set", "animation.rotation_3d_z=3", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "animation.rotation_3d_z: the 3D camera moves a zoom video" in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["/etc/passwd", "../depth.pth", "weights.safetensors", "local-dir:/srv", "~root"])
def test_the_page_takes_a_depth_preset_name_never_a_file_of_the_server(value):
    """A hostile page request naming a server file as the depth model is refused in one line; the preset passes."""
    from vqclip.errors import VqclipError
    from vqclip.ui.jobs import check_safe

    def upload(name):
        raise AssertionError("no upload here")

    good = {"animation": {"mode": "zoom", "translation_z": 5, "depth": "depth-anything-v2-small"}}
    assert check_safe(good, upload) == good
    with pytest.raises(VqclipError) as exc:
        check_safe({"animation": {"depth": value}}, upload)
    assert "animation.depth" in str(exc.value) and "not a model name" in str(exc.value) and "\n" not in str(exc.value)
