"""Upscaler presets as data: each rule of upscalers.yaml at its limit and past it, a name read in any case with a
suggestion when it is close, a path taken as a path, and no download when downloads are off."""

from __future__ import annotations

import pytest
import yaml

from vqclip.errors import VqclipError
from vqclip.models import upscalers as registry


def _listing(tmp_path, **fields):
    body = {"description": "x4 net", "scale": 4, "file": {"filename": "n.pth"}, **fields}
    (tmp_path / "ups.yaml").write_text(yaml.safe_dump({"version": 1, "upscalers": {"net_x4": body}}))
    return tmp_path / "ups.yaml"


@pytest.mark.parametrize("scale, ok", [(2, True), (8, True), (1, False), (0, False), (True, False), (2.0, False),
                                       ("4", False)])
def test_a_scale_is_an_integer_of_at_least_two(tmp_path, scale, ok):
    path = _listing(tmp_path, scale=scale)
    if ok:
        assert registry.load_upscalers_file(path)["net_x4"].scale == scale
    else:
        with pytest.raises(VqclipError, match=f"ups.yaml: upscalers.net_x4.scale: expected an integer >= 2"):
            registry.load_upscalers_file(path)


@pytest.mark.parametrize("fields, expected", [({"colour": "red"}, "upscalers.net_x4: unknown key 'colour'"),
                                              ({"file": {"filename": "a/b.pth"}}, "file.filename: must be a bare"),
                                              ({"description": ""}, "description: expected a non-empty string")])
def test_a_bad_entry_names_the_key(tmp_path, fields, expected):
    with pytest.raises(VqclipError, match=expected):
        registry.load_upscalers_file(_listing(tmp_path, **fields))


def test_a_preset_is_named_in_any_case_and_a_close_name_is_suggested(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "BUILTIN_FILE", _listing(tmp_path))
    assert registry.get_upscaler(" NET_X4 ").name == "net_x4"
    with pytest.raises(VqclipError, match="unknown upscaler 'net_x5': did you mean 'net_x4'\\? known upscalers are "
                                          "net_x4, or give the path"):
        registry.get_upscaler("net_x5")
    with pytest.raises(VqclipError) as info:
        registry.get_upscaler("zzzzzzzzzz")
    assert "did you mean" not in str(info.value)


def test_a_path_is_a_path_and_must_exist(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "BUILTIN_FILE", _listing(tmp_path))
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"w")
    assert registry.upscaler_file(str(weights), download=False) == weights
    monkeypatch.chdir(tmp_path)
    assert registry.upscaler_file("mine.pth", download=False) == weights.relative_to(tmp_path)
    for name in (str(tmp_path / "gone.pth"), "./net_x4", "gone.safetensors"):
        with pytest.raises(VqclipError, match="no such upscaler weights file; check the path, or name a preset "
                                              "\\(net_x4\\)"):
            registry.upscaler_file(name, download=False)
    for name in ("", "   ", None):
        with pytest.raises(VqclipError, match="upscale model: expected a preset name or a weights file"):
            registry.upscaler_file(name)


def test_a_preset_not_on_disk_with_downloads_off_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "BUILTIN_FILE", _listing(tmp_path))
    monkeypatch.setattr(registry, "fetch", lambda *a, **k: pytest.fail("downloads are off"))
    home = tmp_path / "home"
    with pytest.raises(VqclipError, match=f"upscaler 'net_x4' is not on disk \\({home / 'upscalers' / 'n.pth'}\\) "
                                          "and downloads are off"):
        registry.upscaler_file("net_x4", download=False, home_dir=home)
    assert registry.get_upscaler("net_x4").path(home) == home / "upscalers" / "n.pth"
