"""`vqclip models`: the listing, `download` against a local server, `verify`, and error exits."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fileserver import dead_url, payload
from vqclip.cli import main
from vqclip.models.download import human_size




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
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("NAME ")):]
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
    assert lines[0] == f"Home: {tmp_path} (given by --home)"
    assert lines[1] == f"CLIP weights: downloaded into {tmp_path / 'clip'} (the chosen home)"
    lines = lines[3:]
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
    out = capsys.readouterr().out
    on_disk = len(data) + len(b"model: {}\n")
    assert rows(out)["local"][1] == f"yes, {human_size(on_disk)}" and human_size(on_disk) == "300 KB"
    assert f"  local  {h / 't-local.yaml'}, {h / 't-local.ckpt'}\n" in out.split("On disk:")[1]

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
    assert rows(capsys.readouterr().out)["half"][1] == "partial, 3 B"  # the bytes of the partial download
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


def test_listing_says_which_home_is_used_and_why(no_chosen_home, monkeypatch, capsys):
    cwd, cache, hf = no_chosen_home["cwd"], no_chosen_home["user_cache"], no_chosen_home["hf"]
    assert main(["models"]) == 0
    head = capsys.readouterr().out.splitlines()[:2]
    assert head[0].startswith(f"Home: {cache} (the per-user cache folder")
    assert head[1].startswith(f"CLIP weights: downloaded into the Hugging Face cache {hf} ")
    (cwd / "checkpoints").mkdir()
    (cwd / "checkpoints" / "vqgan_imagenet_f16_1024.ckpt").write_bytes(b"x")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Home: {cwd / 'checkpoints'} (./checkpoints here holds model files)\n"
                          f"CLIP weights: downloaded into the Hugging Face cache {hf} ")
    assert rows(out)["imagenet-1024"][1] == "partial, 1 B"  # the old scripts' file is seen (its .yaml is not there)
    monkeypatch.setenv("VQCLIP_HOME", str(cwd / "mine"))
    assert main(["models"]) == 0
    mine = cwd / "mine"
    assert capsys.readouterr().out.startswith(f"Home: {mine} (set by VQCLIP_HOME)\n"
                                              f"CLIP weights: downloaded into {mine / 'clip'} (the chosen home)")


def test_listing_shows_the_clip_file_in_the_hugging_face_cache(no_chosen_home, server, capsys):
    from hubserver import hub_snapshot

    home_dir = no_chosen_home["user_cache"]
    add_preset(home_dir, "here", [server.add("/c.yaml", b"model: {}\n")], [server.add("/c.ckpt", b"ck")])
    assert main(["models", "download", "here", "--skip-clip", "--no-progress"]) == 0
    weights = hub_snapshot(no_chosen_home["hf"], b"x" * 1500)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"CLIP ViT-B-32 (openai): {weights} (1.5 KB, shared Hugging Face cache)" in out
    assert f"{home_dir / 't-here.yaml'}, {home_dir / 't-here.ckpt'}" in out


def _two_presets_on_disk(h: Path, server) -> None:
    """Presets 'one' and 'two' (both with the default CLIP, ViT-B-32 openai) downloaded into home `h`."""
    for name in ("one", "two"):
        add_preset(h, name, [server.add(f"/{name}.yaml", b"model: {}\n")], [server.add(f"/{name}.ckpt", b"c" * 2000)])
    assert main(["models", "--home", str(h), "download", "one", "two", "--skip-clip", "--no-progress"]) == 0


def test_remove_deletes_the_files_and_says_what_and_how_much(tmp_path, server, capsys, offline_hub):
    from hubserver import hub_snapshot

    from vqclip.models.integrity import Manifest

    h = tmp_path / "h"
    _two_presets_on_disk(h, server)
    (h / "t-one.ckpt.part").write_bytes(b"12")  # a leftover partial download goes too
    weights = hub_snapshot(h / "clip", b"w" * 3000)  # fetched into the chosen home's own CLIP folder
    capsys.readouterr()
    assert main(["models", "remove", "one", "--home", str(h)]) == 0
    out = capsys.readouterr().out
    assert not (h / "t-one.yaml").exists() and not (h / "t-one.ckpt").exists() and not (h / "t-one.ckpt.part").exists()
    assert f"removed {h / 't-one.ckpt'} (2.0 KB)" in out
    assert f"kept CLIP ViT-B-32 (openai): {weights} is also used by two" in out and weights.is_file()
    assert out.strip().endswith("one: removed 3 files, 2.0 KB freed")  # 2000 + 10 + 2 bytes
    assert Manifest(h / "manifest.json").entry(h / "t-one.ckpt") is None
    assert Manifest(h / "manifest.json").entry(h / "t-two.ckpt") is not None and (h / "t-two.ckpt").is_file()

    assert main(["models", "remove", "two", "--home", str(h)]) == 0  # the last user of the CLIP: it goes too
    out = capsys.readouterr().out
    repo = h / "clip" / "models--timm--vit_base_patch32_clip_224.openai"
    assert f"removed {repo} (CLIP ViT-B-32 (openai), 3.0 KB)" in out and not repo.exists()
    assert out.strip().endswith("two: removed 3 files, 5.0 KB freed")
    assert main(["models", "remove", "two", "--home", str(h)]) == 0
    assert capsys.readouterr().out.strip() == f"two: nothing to remove in {h}"


def test_remove_keeps_the_shared_cache_and_link_targets(no_chosen_home, server, capsys, offline_hub, tmp_path):
    from hubserver import hub_snapshot

    home_dir = no_chosen_home["user_cache"]
    add_preset(home_dir, "one", [dead_url()], [dead_url()])
    outside = tmp_path / "mine.ckpt"
    outside.write_bytes(b"kept")
    (home_dir / "t-one.ckpt").symlink_to(outside)  # a user's own file, linked into the home
    (home_dir / "t-one.yaml").write_bytes(b"model: {}\n")
    weights = hub_snapshot(no_chosen_home["hf"])
    assert main(["models", "remove", "one"]) == 0
    out = capsys.readouterr().out
    assert f"removed {home_dir / 't-one.ckpt'} (a link; its target is kept)" in out and outside.read_bytes() == b"kept"
    assert f"kept CLIP ViT-B-32 (openai): {weights} is in the shared Hugging Face cache" in out and weights.is_file()
    assert out.strip().endswith("one: removed 2 files, 10 B freed")


def test_remove_a_hand_placed_clip_in_the_home(tmp_path, server, capsys, offline_hub):
    h = tmp_path / "h"
    add_preset(h, "one", [server.add("/one.yaml", b"model: {}\n")], [server.add("/one.ckpt", b"c")])
    assert main(["models", "--home", str(h), "download", "one", "--skip-clip", "--no-progress"]) == 0
    placed = h / "clip" / "ViT-B-32-openai.safetensors"
    placed.parent.mkdir()
    placed.write_bytes(b"p" * 100)
    capsys.readouterr()
    assert main(["models", "remove", "one", "--home", str(h)]) == 0
    out = capsys.readouterr().out
    assert f"removed {placed} (CLIP ViT-B-32 (openai), 100 B)" in out and not placed.exists()
    assert out.strip().endswith("one: removed 3 files, 111 B freed")


@pytest.mark.parametrize("name, expected", [
    ("nope", "error: unknown model preset 'nope'"),
    ("mini", "error: 'mini' is built into vqclip (its files ship with the package); it cannot be removed"),
])
def test_remove_unknown_or_embedded_is_one_line_exit_2(name, expected, capsys):
    from vqclip.models.presets import EMBEDDED_DIR

    before = sorted(EMBEDDED_DIR.iterdir())
    assert main(["models", "remove", name]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(expected)
    assert sorted(EMBEDDED_DIR.iterdir()) == before
