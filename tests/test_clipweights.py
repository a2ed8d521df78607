"""CLIP weights: the shared Hugging Face cache (or open_clip's cache under a chosen <home>), hand-placed files, and
offline errors that name every file at once without waiting on the hub client's retries. No test reaches the
network: the hub is a stand-in on 127.0.0.1 (tests/hubserver.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubserver import COMMIT, HubServer, hub_repo, hub_snapshot
from vqclip.models.clipweights import clip_cache, clips_missing, fetch_clip, hand_placed_clip, unreachable_host
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


OPENAI_B32 = "timm/vit_base_patch32_clip_224.openai/open_clip_model.safetensors"  # where open_clip gets ViT-B-32 openai


@pytest.fixture
def hub(monkeypatch):
    """A hub stand-in on 127.0.0.1 serving the ViT-B-32 openai weights, as huggingface_hub's endpoint (HF_ENDPOINT is
    read at import, so its constants are set); any other host does not resolve."""
    import socket

    from huggingface_hub import constants

    srv = HubServer({OPENAI_B32: b"the weights"})
    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(-2, "Name or service not known")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(constants, "ENDPOINT", srv.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", srv.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        yield srv
    finally:
        srv.stop()


def test_without_a_vqclip_home_a_download_goes_into_the_hugging_face_cache(no_chosen_home, hub):
    """open_clip's real downloader, into the standard cache in its own layout, so `hf cache scan` counts it."""
    from huggingface_hub import scan_cache_dir

    hf = no_chosen_home["hf"]
    assert clip_cache() == hf
    path = fetch_clip("ViT-B-32", "openai")
    assert path == hf / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / COMMIT / Path(OPENAI_B32).name
    assert path.read_bytes() == b"the weights"
    (repo,) = scan_cache_dir(hf).repos
    assert (repo.repo_id, repo.size_on_disk) == ("timm/vit_base_patch32_clip_224.openai", len(b"the weights"))
    assert not (no_chosen_home["user_cache"] / "clip").exists()  # no second copy in vqclip's folder
    fetched = len(hub.requests)
    assert fetch_clip("ViT-B-32", "openai") == path and len(hub.requests) == fetched  # found again, nothing asked


def test_with_vqclip_home_set_a_download_stays_under_it(tmp_path, monkeypatch, hub):
    monkeypatch.setenv("VQCLIP_HOME", str(tmp_path / "mine"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert clip_cache() == tmp_path / "mine" / "clip"
    path = fetch_clip("ViT-B-32", "openai")
    assert path.is_relative_to(tmp_path / "mine" / "clip") and path.read_bytes() == b"the weights"
    assert not (tmp_path / "hf").exists()


def test_a_tag_already_in_the_hugging_face_cache_is_used_with_no_network(no_chosen_home, offline_hub,
                                                                        create_model_args):
    """Weights another tool (open_clip, diffusers) fetched: neither fetched again nor copied; loading reads them."""
    import torch

    from vqclip.models.resolve import resolve_clip
    from vqclip.nets.load import ModelCache

    weights = hub_snapshot(no_chosen_home["hf"])
    assert fetch_clip("ViT-B-32", "openai") == weights
    files = resolve_clip("ViT-B-32", "openai")
    assert (files.pretrained, files.cache_dir, files.like) == (str(weights), no_chosen_home["hf"], "openai")
    assert resolve_clip("ViT-B/32", "openai") == files  # OpenAI's name finds the same file
    with pytest.raises(VqclipError):
        ModelCache().clip(files, torch.device("cpu"))
    assert create_model_args["pretrained"] == str(weights)
    assert not (no_chosen_home["user_cache"] / "clip").exists()


def test_with_vqclip_home_set_a_copy_in_the_hugging_face_cache_is_still_used(tmp_path, monkeypatch, offline_hub):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    weights = hub_snapshot(tmp_path / "hf")
    assert fetch_clip("ViT-B-32", "openai") == weights  # VQCLIP_HOME is set (conftest): nothing fetched into it


def test_hand_placed_file_in_the_default_home_wins_over_the_hugging_face_cache(no_chosen_home, offline_hub):
    hub_snapshot(no_chosen_home["hf"])
    placed = no_chosen_home["user_cache"] / "clip" / "ViT-B-32-openai.safetensors"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"mine")
    assert fetch_clip("ViT-B-32", "openai") == placed


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
    weights = hub_snapshot(tmp_path / "clip")
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
    from vqclip.tools.clipping import ClipChoice, clip_specs  # classify, search, score and rank load it the same way

    (files,) = clip_specs(ClipChoice(clip_models=("ViT-B-16-SigLIP",), clip_pretrained=("webli",)))
    assert (files.model, files.pretrained, files.cache_dir, files.like) == ("ViT-B-16-SigLIP", str(placed),
                                                                           placed.parent, "webli")


def test_a_tag_fetched_before_loads_from_its_cached_file_without_asking_the_hub(tmp_path, monkeypatch, offline_hub,
                                                                                create_model_args):
    """Once open_clip's downloader put a tag's weights in <home>/clip, loading reads that file: no second lookup."""
    import torch

    from vqclip.models.resolve import resolve_clip
    from vqclip.nets.load import ModelCache

    home = tmp_path / "home"
    weights = hub_snapshot(home / "clip")
    monkeypatch.setenv("VQCLIP_HOME", str(home))
    with pytest.raises(VqclipError):
        ModelCache().clip(resolve_clip("ViT-B-32", "openai"), torch.device("cpu"))
    assert create_model_args["pretrained"] == str(weights)
    assert create_model_args["name"] == "ViT-B-32-quickgelu"  # the openai tag's QuickGELU, kept for the file


def test_hf_hub_and_local_dir_load_offline_as_open_clip_loads_them(no_chosen_home, offline_hub, tiny_clip):
    """hf-hub:org/repo from the Hugging Face cache with the hub offline, and local-dir: of its snapshot: the weights
    and preprocessing open_clip's own hub loader gives, through the job's path (resolve_clip, then ModelCache)."""
    import open_clip
    import torch

    from vqclip.models.resolve import resolve_clip
    from vqclip.nets.load import ModelCache

    snapshot = hub_repo(no_chosen_home["hf"], "someone/tiny-clip", tiny_clip)
    files = resolve_clip("hf-hub:someone/tiny-clip", None)
    assert (files.model, files.cache_dir) == ("hf-hub:someone/tiny-clip", no_chosen_home["hf"])
    hub_clip = ModelCache().clip(files, torch.device("cpu"))
    dir_clip = ModelCache().clip(resolve_clip(f"local-dir:{snapshot}", None), torch.device("cpu"))
    reference = open_clip.create_model("hf-hub:someone/tiny-clip", cache_dir=str(no_chosen_home["hf"]))
    for clip in (hub_clip, dir_clip):
        assert tuple(clip.preprocess_cfg.mean) == (0.5, 0.5, 0.5)
        for key, value in reference.state_dict().items():
            assert torch.equal(clip.model.state_dict()[key], value), key
    texts = ["a red circle", "a blue square"]
    assert torch.allclose(hub_clip.encode_text(texts), dir_clip.encode_text(texts))


@pytest.mark.parametrize("given, name", [("ViT-B/32", "ViT-B-32"), ("ViT-B/16", "ViT-B-16"), ("ViT-L/14", "ViT-L-14"),
                                         ("ViT-L/14@336px", "ViT-L-14-336"), ("RN50", "RN50"), ("RN50x4", "RN50x4")])
def test_openai_names_of_the_old_scripts_are_open_clips_names(given, name, caplog):
    import open_clip

    from vqclip.config import merge_layers

    with caplog.at_level("INFO", logger="vqclip"):
        cfg = merge_layers([("--clip-model", {"clip": [{"model": given}], "candidates": {"clip": [given]}})])
    assert cfg.clip[0].model == name and cfg.candidates.clip[0].model == name and name in open_clip.list_models()
    assert cfg.clip[0].pretrained == "openai"  # the old scripts' weights: OpenAI's
    assert (f"CLIP '{given}' is OpenAI's name for open_clip's {name}" in caplog.text) == (given != name)


def test_an_openai_name_loads_directly(tiny_clip, caplog):
    from vqclip.models.spec import ClipSpec

    with caplog.at_level("INFO", logger="vqclip"):
        from vqclip.nets.clip import load_clip

        clip = load_clip("ViT-B/32", None)  # random weights: nothing fetched
    assert clip.name == "ViT-B-32" and "OpenAI's name" in caplog.text
    assert ClipSpec.parse("ViT-L/14@336px", "openai") == ClipSpec("name", "ViT-L-14-336", "openai")
    assert ClipSpec.parse("./ViT-B/32").form == "dir"  # a folder of that name is written as a path


def test_an_unknown_clip_name_is_one_line_with_did_you_mean_before_any_download(tmp_path, capsys, server):
    from vqclip.cli import main

    url = server.add("/never.ckpt", b"x")
    (tmp_path / "vqclip-home").mkdir(exist_ok=True)
    (tmp_path / "vqclip-home" / "presets.yaml").write_text(
        "presets:\n  far:\n    description: d\n    vqgan:\n"
        f"      config: {{filename: f.yaml, urls: ['{url}']}}\n"
        f"      checkpoint: {{filename: f.ckpt, urls: ['{url}']}}\n")
    code = main(["generate", "x", "--model", "far", "--clip-model", "ViT-B32", "--steps", "1", "--quiet",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: unknown CLIP model 'ViT-B32': did you mean 'ViT-B-32'")
    assert server.requests == []  # the 1 GB VQGAN is not fetched for a job that cannot run
