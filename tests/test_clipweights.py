"""CLIP weights: open_clip's cache under <home>, hand-placed files, and offline errors that name every file at once
without waiting on the hub client's retries. No test reaches the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from vqclip.models.clipweights import clips_missing, fetch_clip, hand_placed_clip, unreachable_host
from vqclip.models.download import DownloadError
from vqclip.errors import VqclipError


@pytest.fixture
def create_model_args(monkeypatch) -> dict:
    """open_clip.create_model replaced by a recorder of its arguments that stops the load there."""
    import open_clip

    seen = {}

    def create_model(name, pretrained=None, **kwargs):
        seen.update(name=name, pretrained=pretrained, **kwargs)
        raise RuntimeError("stop here: the arguments are what is checked")

    monkeypatch.setattr(open_clip, "create_model", create_model)
    return seen


def _hub_snapshot(cache: Path) -> Path:
    """The OpenAI ViT-B-32 weights as open_clip's hub downloader leaves them in `cache`; their path."""
    snapshot = cache / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    (snapshot / "open_clip_model.safetensors").write_bytes(b"w")
    return snapshot / "open_clip_model.safetensors"


def test_fetch_clip_uses_open_clip_cache_under_home(tmp_path, monkeypatch):
    from open_clip import pretrained

    seen = {}

    def fake_download(cfg, prefer_hf_hub=True, cache_dir=None):
        seen["cache_dir"] = cache_dir
        target = Path(cache_dir) / "weights.safetensors"
        target.write_bytes(b"w")
        return str(target)

    monkeypatch.setattr(pretrained, "download_pretrained", fake_download)
    monkeypatch.setattr("vqclip.models.clipweights.unreachable_host", lambda url: None)  # as if online
    path = fetch_clip("ViT-B-32", "openai", tmp_path)
    assert seen["cache_dir"] == str(tmp_path / "clip") and path == tmp_path / "clip" / "weights.safetensors"


def test_fetch_clip_failure_is_a_download_error_with_manual_path(tmp_path, monkeypatch):
    from open_clip import pretrained

    def offline(cfg, prefer_hf_hub=True, cache_dir=None):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(pretrained, "download_pretrained", offline)
    monkeypatch.setattr("vqclip.models.clipweights.unreachable_host", lambda url: None)  # as if online
    with pytest.raises(DownloadError) as info:
        fetch_clip("ViT-B-32", "openai", tmp_path)
    message = str(info.value)
    assert "CLIP ViT-B-32 (openai)" in message and "name resolution" in message
    assert "vit_base_patch32_clip_224.openai" in message  # the URL to fetch by hand
    assert f"put it at {tmp_path / 'clip' / 'ViT-B-32-openai.safetensors'}" in message


def test_hand_placed_clip_file_is_used_without_network(tmp_path, monkeypatch):
    from open_clip import pretrained

    def no_network(*args, **kwargs):
        raise AssertionError("must not download when the file is in place")

    monkeypatch.setattr(pretrained, "download_pretrained", no_network)
    placed = tmp_path / "clip" / "ViT-B-32-openai.safetensors"
    placed.parent.mkdir()
    placed.write_bytes(b"weights")
    assert fetch_clip("ViT-B-32", "openai", tmp_path) == placed
    # a file path loses the tag's QuickGELU setting, so the -quickgelu architecture is chosen
    assert hand_placed_clip("ViT-B-32", "openai", tmp_path) == ("ViT-B-32-quickgelu", str(placed))


def test_fetch_clip_unknown_tag_lists_known_tags(tmp_path):
    with pytest.raises(VqclipError, match="laion2b_s34b_b79k"):
        fetch_clip("ViT-B-32", "no-such-tag", tmp_path)


def test_fetch_clip_offline_fails_at_once_naming_the_host(tmp_path, offline_hub):
    with pytest.raises(DownloadError) as info:
        fetch_clip("ViT-B-32", "openai", tmp_path)
    message = str(info.value)
    assert "huggingface.co: Name or service not known" in message
    assert f"put it at {tmp_path / 'clip' / 'ViT-B-32-openai.safetensors'}" in message


def test_fetch_clip_finds_open_clip_cache_offline(tmp_path, offline_hub):
    weights = _hub_snapshot(tmp_path / "clip")
    assert fetch_clip("ViT-B-32", "openai", tmp_path) == weights


def test_a_host_that_resolves_but_refuses_is_reported():
    import socket

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert unreachable_host(f"http://127.0.0.1:{port}/x") is None  # someone answers
    assert unreachable_host(f"http://127.0.0.1:{port}/x") == "127.0.0.1: Connection refused"


def test_no_reachability_check_behind_a_proxy(monkeypatch, offline_hub):
    assert unreachable_host("https://huggingface.co/x") == "huggingface.co: Name or service not known"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # the proxy resolves names, not this machine
    assert unreachable_host("https://huggingface.co/x") is None


def test_clips_missing_lists_each_missing_file_once(tmp_path, offline_hub, tiny_clip):
    specs = [("ViT-B-32", "openai"), ("ViT-B-32", "openai"), (str(tiny_clip[0]), str(tiny_clip[1])),
             ("ViT-B-16", "openai"), ("ViT-B-32", None)]
    missing = clips_missing(specs, tmp_path)
    assert [m.filename for m in missing] == ["CLIP ViT-B-32 (openai) weights", "CLIP ViT-B-16 (openai) weights"]


def test_a_hand_placed_file_keeps_its_tags_preprocessing(tmp_path, monkeypatch, create_model_args):
    """SigLIP's tag normalises with mean 0.5, not OpenAI's: loading its weights from a file must not lose that."""
    import torch

    from vqclip.models.resolve import resolve_clip
    from vqclip.nets.load import ModelCache

    placed = tmp_path / "home" / "clip" / "ViT-B-16-SigLIP-webli.safetensors"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"weights")
    monkeypatch.setenv("VQCLIP_HOME", str(tmp_path / "home"))
    with pytest.raises(VqclipError):
        ModelCache().clip(resolve_clip("ViT-B-16-SigLIP", "webli"), torch.device("cpu"))
    assert create_model_args["pretrained"] == str(placed)
    assert create_model_args["force_preprocess_cfg"]["mean"] == (0.5, 0.5, 0.5)
    assert create_model_args["force_preprocess_cfg"]["resize_mode"] == "squash"
    import argparse

    from vqclip.cli.clipjobs import clip_specs  # classify, search, score and rank load it the same way

    args = argparse.Namespace(model=None, clip_model=["ViT-B-16-SigLIP"], clip_pretrained=["webli"])
    (files,) = clip_specs(args)
    assert (files.model, files.pretrained, files.cache_dir, files.like) == ("ViT-B-16-SigLIP", str(placed),
                                                                           placed.parent, "webli")


def test_a_tag_fetched_before_loads_from_its_cached_file_without_asking_the_hub(tmp_path, monkeypatch, offline_hub,
                                                                                create_model_args):
    """Once open_clip's downloader put a tag's weights in <home>/clip, loading reads that file: no second lookup."""
    import torch

    from vqclip.models.resolve import resolve_clip
    from vqclip.nets.load import ModelCache

    home = tmp_path / "home"
    weights = _hub_snapshot(home / "clip")
    monkeypatch.setenv("VQCLIP_HOME", str(home))
    with pytest.raises(VqclipError):
        ModelCache().clip(resolve_clip("ViT-B-32", "openai"), torch.device("cpu"))
    assert create_model_args["pretrained"] == str(weights)
    assert create_model_args["name"] == "ViT-B-32-quickgelu"  # the openai tag's QuickGELU, kept for the file
