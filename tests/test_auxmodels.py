"""Auxiliary model presets (depth, flow) as data: the built-in entries as published, each rule of auxmodels.yaml at
its limit and past it, a download from a 127.0.0.1 server checked by size, sha256 and the digits a file's name
carries, the offline and downloads-off errors (one line naming `vqclip models download NAME`), and `vqclip models`
listing, downloading, verifying and removing them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from fileserver import dead_url, payload, sha
from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.models import auxmodels as registry
from vqclip.models.download import human_size
from vqclip.models.integrity import Manifest

DATA = payload(50_000, seed=3)
DIGEST = sha(DATA)


def test_the_built_in_presets_are_the_published_files():
    presets = registry.load_aux_file()
    assert list(presets)[:2] == ["depth-anything-v2-small", "raft-small"]
    depth, raft = presets["depth-anything-v2-small"], presets["raft-small"]
    assert (depth.kind, raft.kind) == ("depth", "flow")
    assert depth.file.urls == ("https://huggingface.co/depth-anything/Depth-Anything-V2-Small/resolve/main/"
                               "depth_anything_v2_vits.pth",)
    assert (depth.file.size, depth.file.sha256) == (  # the Hub's Git LFS pointer of the upload
        99218434, "715fade13be8f229f8a70cc02066f656f2423a59effd0579197bbf57860e1378")
    assert depth.licence.startswith("Apache-2.0") and raft.licence.startswith("BSD-3-Clause")
    assert raft.file.urls == ("https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth",)
    assert raft.file.sha256 is None and raft.sha256_prefix == "01064c6d"  # torchvision's name: 8 hex digits of it
    assert raft.file.filename.rsplit("-", 1)[1] == raft.sha256_prefix + ".pth"
    assert depth.path(Path("/h")) == Path("/h/auxmodels/depth_anything_v2_vits.pth")


def _listing(tmp_path: Path, url: str = "", **fields) -> Path:
    body = {"kind": "depth", "description": "a test depth net",
            "file": {"filename": "d.pth", "urls": [url or dead_url()], "approx_size": "50 KB"}, **fields}
    path = tmp_path / "aux.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "auxmodels": {"depth-net": body}}))
    return path


@pytest.mark.parametrize("fields, message", [
    ({"colour": "red"}, "auxmodels.depth-net: unknown key 'colour'"),
    ({"kind": "normals"}, "auxmodels.depth-net.kind: expected one of depth, flow, lpips, got 'normals'"),
    ({"sha256_prefix": "0106"}, "sha256_prefix: expected 8 to 63 lowercase hexadecimal characters, got '0106'"),
    ({"sha256_prefix": "0106zz6d"}, "sha256_prefix: expected 8 to 63"),
    ({"sha256_prefix": "a" * 64}, "sha256_prefix: expected 8 to 63"),
    ({"sha256_prefix": "ab12cd34", "file": {"filename": "d.pth", "sha256": "ab12cd35" + "0" * 56}},
     "sha256_prefix ab12cd34 disagrees with the pinned sha256 ab12cd3500000000..."),
])
def test_each_rule_of_the_file_is_one_line_naming_the_key(tmp_path, fields, message):
    with pytest.raises(VqclipError, match=message.replace("(", "\\(").replace(")", "\\)")) as info:
        registry.load_aux_file(_listing(tmp_path, **fields))
    assert "\n" not in str(info.value)


def test_a_prefix_at_its_limits_and_agreeing_with_the_pin_is_accepted(tmp_path):
    for prefix in ("ab12cd34", "a" * 63):
        assert registry.load_aux_file(_listing(tmp_path, sha256_prefix=prefix))["depth-net"].sha256_prefix == prefix
    pinned = {"filename": "d.pth", "sha256": "ab12cd34" + "0" * 56}
    assert registry.load_aux_file(_listing(tmp_path, sha256_prefix="ab12cd34", file=pinned))["depth-net"].file.sha256


def test_names_are_read_in_any_case_and_by_kind():
    assert registry.get_aux(" RAFT-Small ").name == "raft-small"
    assert registry.get_aux("depth-anything-v2-small", kind="depth").kind == "depth"
    with pytest.raises(VqclipError, match="unknown depth model 'raft-small': known depth models are "
                                          "depth-anything-v2-small, or give the path"):
        registry.get_aux("raft-small", kind="depth")
    with pytest.raises(VqclipError, match="unknown auxiliary model 'raft-smal': did you mean 'raft-small'\\?"):
        registry.get_aux("raft-smal")
    assert registry.is_aux("Raft-Small") and not registry.is_aux("mini") and not registry.is_aux("raft")


def test_a_path_is_read_as_is_and_a_missing_one_is_one_line(tmp_path):
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"w")
    assert registry.aux_file(str(weights), download=False) == weights
    with pytest.raises(VqclipError, match="gone.pth: no such depth model weights file; check the path, or name a "
                                          "preset \\(depth-anything-v2-small\\)$"):
        registry.aux_file(str(tmp_path / "gone.pth"), kind="depth")
    for name in ("", "  ", None):
        with pytest.raises(VqclipError, match="depth model: expected a preset name or a weights file"):
            registry.aux_file(name, kind="depth")


@pytest.fixture
def served(server, tmp_path, monkeypatch):
    """A preset whose file the local server holds, pinned by sha256; (url, home)."""
    url = server.add("/d.pth", DATA)
    monkeypatch.setattr(registry, "BUILTIN_FILE", _listing(tmp_path, url, file={
        "filename": "d.pth", "urls": [url], "size": len(DATA), "sha256": DIGEST}))
    return url, tmp_path / "home"


def test_a_preset_is_downloaded_once_into_the_home_and_checked(served, server):
    url, home = served
    path = registry.aux_file("depth-net", progress=False, home_dir=home, kind="depth")
    assert path == home / "auxmodels" / "d.pth" and path.read_bytes() == DATA
    assert registry.aux_file("depth-net", download=False, home_dir=home) == path  # on disk: no download needed
    assert registry.aux_file("depth-net", progress=False, home_dir=home) == path
    assert len(server.ranges("/d.pth")) == 1
    path.write_bytes(DATA[:-1] + b"x")  # corrupted on disk: refused, not used
    with pytest.raises(VqclipError, match="sha256"):
        registry.aux_file("depth-net", progress=False, home_dir=home)


@pytest.mark.parametrize("pin", ["size", "sha256"])
def test_a_host_serving_other_bytes_is_refused(server, tmp_path, monkeypatch, pin):
    url = server.add("/d.pth", DATA)
    wrong = {"size": len(DATA) + 1} if pin == "size" else {"sha256": sha(b"other")}
    monkeypatch.setattr(registry, "BUILTIN_FILE", _listing(tmp_path, url, file={
        "filename": "d.pth", "urls": [url], **wrong}))
    home = tmp_path / "home"
    with pytest.raises(VqclipError, match="depth net|depth-net") as info:
        registry.aux_file("depth-net", progress=False, home_dir=home)
    assert "\n" not in str(info.value) and not (home / "auxmodels" / "d.pth").exists()


def _prefixed(server, tmp_path, monkeypatch, prefix: str) -> Path:
    url = server.add("/r.pth", DATA)
    monkeypatch.setattr(registry, "BUILTIN_FILE", _listing(tmp_path, url, kind="flow", sha256_prefix=prefix, file={
        "filename": "r.pth", "urls": [url]}))
    return tmp_path / "home"


def test_a_file_whose_sha256_starts_with_its_names_digits_is_kept_and_recorded(server, tmp_path, monkeypatch):
    home = _prefixed(server, tmp_path, monkeypatch, DIGEST[:8])
    path = registry.aux_file("depth-net", progress=False, home_dir=home, kind="flow")
    assert path.read_bytes() == DATA
    assert Manifest(home / "manifest.json").entry(path)["sha256"] == DIGEST == hashlib.sha256(DATA).hexdigest()


def test_a_file_whose_sha256_does_not_start_with_its_names_digits_is_deleted_in_one_line(server, tmp_path,
                                                                                        monkeypatch):
    other = "0" * 8 if not DIGEST.startswith("0" * 8) else "1" * 8
    home = _prefixed(server, tmp_path, monkeypatch, other)
    path = home / "auxmodels" / "r.pth"
    with pytest.raises(VqclipError, match=f"^{path}: sha256 {DIGEST[:16]}\\.\\.\\. does not start with {other}, "
                                          "which its published name carries; deleted it: run `vqclip models "
                                          "download depth-net` to fetch a good copy$"):
        registry.aux_file("depth-net", progress=False, home_dir=home)
    assert not path.exists() and Manifest(home / "manifest.json").entry(path) is None


def test_offline_or_downloads_off_is_one_line_naming_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "fetch", lambda *a, **k: pytest.fail("downloads are off"))
    home = tmp_path / "home"
    path = home / "auxmodels" / "depth_anything_v2_vits.pth"
    with pytest.raises(VqclipError, match=f"^depth model 'depth-anything-v2-small' is not on disk \\({path}\\) and "
                                          "downloads are off; fetch it with `vqclip models download "
                                          "depth-anything-v2-small`$"):
        registry.aux_file("depth-anything-v2-small", download=False, home_dir=home, kind="depth")


def test_a_host_that_cannot_be_reached_is_one_line_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "BUILTIN_FILE", _listing(tmp_path))  # its only URL refuses connections
    home = tmp_path / "home"
    with pytest.raises(VqclipError) as info:
        registry.aux_file("depth-net", progress=False, home_dir=home)
    text = str(info.value)
    assert text.startswith("auxiliary model 'depth-net' is not on disk and could not be downloaded (") and \
        "\n" not in text and text.endswith(f"; fetch it with `vqclip models download depth-net` where there is a "
                                           f"network, or put d.pth at {home / 'auxmodels' / 'd.pth'}")


def test_vqclip_models_lists_downloads_verifies_and_removes_an_auxiliary_preset(served, server, capsys):
    _, home = served
    assert main(["models", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    [row] = [ln for ln in out.splitlines() if ln.startswith("depth-net ")]
    assert row.split()[:5] == ["depth-net", "depth", *human_size(len(DATA)).split(), "no"]  # pinned: exact
    assert main(["models", "download", "depth-net", "--home", str(home), "--no-progress"]) == 0
    assert (home / "auxmodels" / "d.pth").read_bytes() == DATA and "depth-net: ready" in capsys.readouterr().out
    assert main(["models", "--home", str(home)]) == 0
    [row] = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("depth-net ")]
    assert row.split()[4:7] == ["yes,", *human_size(len(DATA)).split()]
    assert main(["models", "--home", str(home), "verify"]) == 0
    [row] = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("depth-net ")]
    assert f"ok (sha256 {DIGEST[:12]}..., pinned)" in row
    (home / "auxmodels" / "d.pth").write_bytes(b"x" * len(DATA))
    assert main(["models", "--home", str(home), "verify", "depth-net"]) == 2
    assert "CORRUPT" in capsys.readouterr().out
    assert main(["models", "--home", str(home), "remove", "depth-net"]) == 0
    assert f"removed {home / 'auxmodels' / 'd.pth'}" in capsys.readouterr().out
    assert not (home / "auxmodels" / "d.pth").exists()


def test_vqclip_models_verify_refuses_a_file_not_matching_its_names_digits(server, tmp_path, monkeypatch, capsys):
    home = _prefixed(server, tmp_path, monkeypatch, "0" * 8 if not DIGEST.startswith("0" * 8) else "1" * 8)
    (home / "auxmodels").mkdir(parents=True)
    (home / "auxmodels" / "r.pth").write_bytes(DATA)  # placed by hand
    assert main(["models", "--home", str(home), "verify"]) == 2
    assert "CORRUPT: sha256 does not start with" in capsys.readouterr().out


def test_vqclip_models_download_offline_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(registry, "BUILTIN_FILE", _listing(tmp_path))
    assert main(["models", "download", "depth-net", "--home", str(tmp_path / "h"), "--timeout", "2"]) == 2
    assert "error: could not download 1 file" in capsys.readouterr().err


def test_vqclip_models_download_deletes_a_file_not_matching_its_names_digits(server, tmp_path, monkeypatch, capsys):
    other = "0" * 8 if not DIGEST.startswith("0" * 8) else "1" * 8
    home = _prefixed(server, tmp_path, monkeypatch, other)
    assert main(["models", "download", "depth-net", "--home", str(home), "--no-progress"]) == 2
    assert f"does not start with {other}" in capsys.readouterr().err
    assert not (home / "auxmodels" / "r.pth").exists()


def test_vqclip_models_remove_forgets_the_recorded_sha256(server, tmp_path, monkeypatch, capsys):
    home = _prefixed(server, tmp_path, monkeypatch, DIGEST[:8])
    assert main(["models", "download", "depth-net", "--home", str(home), "--no-progress"]) == 0
    path, manifest = home / "auxmodels" / "r.pth", Manifest(home / "manifest.json")
    assert manifest.entry(path)["sha256"] == DIGEST  # unpinned: recorded on first download
    assert main(["models", "remove", "depth-net", "--home", str(home)]) == 0
    assert not path.exists() and manifest.entry(path) is None  # a new copy is checked afresh, not against the old
    assert main(["models", "remove", "depth-net", "--home", str(home)]) == 0
    assert "depth-net: nothing to remove" in capsys.readouterr().out
