"""Offline without `--model`: no "downloading" note before the error (a host that never answered is not being
downloaded from), an error whose first line says that the built-in preset runs without a download, and a CLIP path
that says what it is: where a file placed by hand is read first, while downloads go to the Hugging Face cache."""

from __future__ import annotations

import pytest

from fileserver import dead_url
from vqclip.cli import main
from vqclip.models.download import DownloadError, fetch
from vqclip.models.presets import FileSpec

FIRST = ("could not download 3 files (offline, or every host failed); the built-in mini preset (--model mini) runs "
         "without a download; or download by hand")


def test_the_default_preset_offline_says_first_that_mini_runs_without_a_download(no_chosen_home, offline_hub, capsys):
    assert main(["generate", "a red circle", "--steps", "1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert not [line for line in err if "downloading" in line]  # nothing was being downloaded
    assert err[0].startswith("error: " + FIRST), err[0]
    [clip] = [line.strip() for line in err if ".safetensors" in line and "put it at" in line]
    hand = no_chosen_home["user_cache"] / "clip" / "ViT-B-32-openai.safetensors"
    assert clip == f"put it at {hand} (read from there first; downloads go to {no_chosen_home['hf']})"
    assert not (no_chosen_home["cwd"] / "outputs").exists()


def test_a_chosen_home_keeps_clip_downloads_there_and_mini_with_another_clip_gets_no_hint(tmp_path, offline_hub,
                                                                                           capsys):
    assert main(["generate", "a red circle", "--steps", "1"]) == 2  # conftest's VQCLIP_HOME: downloads go there
    err = capsys.readouterr().err
    assert "downloads go to" not in err and f"put it at {tmp_path / 'vqclip-home' / 'clip'}" in err
    assert main(["generate", "a red circle", "--model", "mini", "--clip-model", "ViT-B-32", "--clip-pretrained",
                 "openai", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not download 1 file (offline, or every host failed); download by hand"), err


def test_downloading_is_said_once_a_host_answers(server, tmp_path, caplog):
    url = server.add("/m.ckpt", b"x" * 1000)
    with caplog.at_level("INFO", logger="vqclip"), pytest.raises(DownloadError):
        fetch(FileSpec("gone.ckpt", (dead_url("/a"), dead_url("/b"))), tmp_path, progress=False, timeout=2)
    assert not [r for r in caplog.records if "downloading" in r.getMessage()]
    fetch(FileSpec("m.ckpt", (dead_url("/a"), url)), tmp_path, progress=False, timeout=2)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("downloading")]
    assert said == [f"downloading m.ckpt from {url.split('/')[2]} (mirror)"]
