"""`vqclip models`: the listing, `download` against a local server, `verify`, and error exits."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fileserver import dead_url, payload
from vqclip.cli import main




def add_preset(home_dir: Path, name: str, config_urls, ckpt_urls) -> None:
    """Write (or extend) <home>/presets.yaml with a preset whose files are t-<name>.yaml/.ckpt."""
    path = home_dir / "presets.yaml"
    data = yaml.safe_load(path.read_text()) if path.is_file() else {"presets": {}}
    data["presets"][name] = {"description": f"test model {name}", "vqgan": {
        "config": {"filename": f"t-{name}.yaml", "urls": list(config_urls), "approx_size": "2 KB"},
        "checkpoint": {"filename": f"t-{name}.ckpt", "urls": list(ckpt_urls), "approx_size": "300 KB"}}}
    home_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))


def rows(out: str) -> dict[str, list[str]]:
    """The listing's table cells by preset name, cut at the header's column starts ('*' default marker dropped)."""
    lines = out.splitlines()
    starts = [lines[0].index(h) for h in ("NAME", "SIZE", "ON DISK", "CLIP", "WHAT IT IS")] + [None]
    table = {}
    for line in lines[1:]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:])]
        table[cells[0].rstrip(" *")] = cells[1:]
    return table


def test_listing_is_an_aligned_table_of_every_preset(tmp_path, capsys):
    assert main(["models", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "ON", "DISK", "CLIP", "WHAT", "IT", "IS"]
    table = rows(out)
    for name in ("imagenet-16384", "imagenet-1024", "openimages-8192", "wikiart-16384", "sflckr", "coco", "faceshq"):
        assert table[name][1] == "no", name
    assert table["imagenet-16384"][:3] == ["~980 MB", "no", "ViT-B-32 (openai)"] and "imagenet-16384 *" in out
    column = lines[0].index("ON DISK")
    assert all(line[column - 2:column] == "  " for line in lines[1:len(table) + 1])  # columns line up
    assert str(tmp_path) in out and "vqclip models download NAME" in out


def test_download_then_list_verify_and_corruption(server, tmp_path, capsys):
    h = tmp_path / "h"
    data = payload()
    add_preset(h, "local", [server.add("/c.yaml", b"model: {}\n")], [dead_url(), server.add("/c.ckpt", data)])
    assert main(["models", "download", "local", "--home", str(h), "--skip-clip", "--no-progress"]) == 0
    assert (h / "t-local.ckpt").read_bytes() == data
    assert "local: ready" in capsys.readouterr().out

    assert main(["models", "--home", str(h)]) == 0
    assert rows(capsys.readouterr().out)["local"][1] == "yes"

    assert main(["models", "--home", str(h), "verify"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok (sha256") == 2 and "t-local.ckpt" in out

    (h / "t-local.ckpt").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert main(["models", "verify", "local", "--home", str(h)]) == 2
    captured = capsys.readouterr()
    assert "CORRUPT" in captured.out and "error: 1 corrupt file" in captured.err


def test_download_offline_exits_2_naming_files_urls_and_paths(tmp_path, capsys):
    h = tmp_path / "h"
    urls = [dead_url("/o.yaml")], [dead_url("/o.ckpt")]
    add_preset(h, "off", *urls)
    assert main(["models", "--home", str(h), "download", "off", "--skip-clip", "--timeout", "2"]) == 2
    err = capsys.readouterr().err
    assert "error: could not download 2 files" in err
    assert urls[0][0] in err and urls[1][0] in err
    assert str(h / "t-off.yaml") in err and str(h / "t-off.ckpt") in err


def test_partial_download_shows_in_listing_and_verify(tmp_path, capsys):
    h = tmp_path / "h"
    add_preset(h, "half", [dead_url()], [dead_url()])
    (h / "t-half.ckpt.part").write_bytes(b"123")
    assert main(["models", "--home", str(h)]) == 0
    assert rows(capsys.readouterr().out)["half"][1] == "partial"
    assert main(["models", "--home", str(h), "verify", "half"]) == 0
    out = capsys.readouterr().out
    assert "missing" in out and "partial download" in out


def test_unknown_preset_is_error_exit_2(tmp_path, capsys):
    assert main(["models", "download", "nope", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown model preset 'nope'" in err and "imagenet-16384" in err


def test_home_from_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VQCLIP_HOME", str(tmp_path / "env-home"))
    add_preset(tmp_path / "env-home", "envy", [dead_url()], [dead_url()])
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "envy" in rows(out) and str(tmp_path / "env-home") in out and "User presets from" in out


def test_offline_generate_names_the_vqgan_and_clip_files_in_one_error(tmp_path, capsys, offline_hub, monkeypatch):
    h = tmp_path / "h"
    monkeypatch.setenv("VQCLIP_HOME", str(h))
    add_preset(h, "off", [dead_url("/o.yaml")], [dead_url("/o.ckpt")])
    code = main(["generate", "x", "--model", "off", "--steps", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "error: could not download 3 files" in err
    assert str(h / "t-off.yaml") in err and str(h / "t-off.ckpt") in err
    assert f"put it at {h / 'clip' / 'ViT-B-32-openai.safetensors'}" in err
    assert not (tmp_path / "run").exists()


def test_offline_classify_names_the_clip_file(tmp_path, capsys, offline_hub):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["classify", str(tmp_path / "x.png"), "--labels", "a,b"]) == 2
    err = capsys.readouterr().err
    assert "CLIP ViT-B-32 (openai) weights" in err and "Name or service not known" in err


@pytest.mark.parametrize("argv, expected", [
    (["models", "download", "mini", "--timeout", "-1"], "--timeout: must be a number of seconds > 0, got -1.0"),
    (["models", "download", "mini", "--timeout", "nan"], "--timeout: must be a number of seconds > 0"),
    (["models", "--home", "{file}"], "is a file, not a folder; point --home at a folder"),
])
def test_bad_models_options_are_one_line(tmp_path, capsys, argv, expected):
    (tmp_path / "f.png").write_bytes(b"x")
    assert main([a.format(file=tmp_path / "f.png") for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


def test_a_file_as_vqclip_home_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "f").write_bytes(b"x")
    monkeypatch.setenv("VQCLIP_HOME", str(tmp_path / "f"))
    assert main(["models"]) == 2
    assert "point VQCLIP_HOME at a folder" in capsys.readouterr().err
