"""Where CLIP weights are: the Hugging Face cache as huggingface_hub itself finds it from the environment, the URL
and file name a tag is fetched as, the hand-placed file's name, and the hub's log level put back after a fetch."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from vqclip.models.clipweights import clip_cache, clip_manual_path, clip_weights_url, hf_hub_cache, quiet_hub_logs

HF_VARS = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")


@pytest.mark.parametrize("env", [
    {"HF_HUB_CACHE": "a", "HUGGINGFACE_HUB_CACHE": "b", "HF_HOME": "c", "XDG_CACHE_HOME": "d"},
    {"HUGGINGFACE_HUB_CACHE": "b", "HF_HOME": "c", "XDG_CACHE_HOME": "d"},
    {"HF_HOME": "c", "XDG_CACHE_HOME": "d"},
    {"XDG_CACHE_HOME": "d"},
    {},
])
def test_the_hub_cache_is_where_huggingface_hub_puts_it(monkeypatch, tmp_path, env):
    """huggingface_hub reads these variables when it is imported: a fresh interpreter is the reference."""
    import json
    import os
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    clean = {k: v for k, v in os.environ.items() if k not in HF_VARS}
    full = {**clean, "HOME": str(tmp_path), **{k: str(tmp_path / v) if v.strip() else v for k, v in env.items()}}
    for key in HF_VARS:
        monkeypatch.delenv(key, raising=False)
    for key, value in full.items():
        monkeypatch.setenv(key, value)
    reference = subprocess.run([sys.executable, "-c", "import json, huggingface_hub.constants as c; "
                                "print(json.dumps(c.HF_HUB_CACHE))"], env=full, capture_output=True, text=True)
    assert hf_hub_cache() == Path(json.loads(reference.stdout)).absolute()


def test_the_cache_is_the_vqclip_home_only_when_one_was_chosen(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("VQCLIP_HOME")
    assert clip_cache(tmp_path / "given") == tmp_path / "given" / "clip"  # --home chooses it
    monkeypatch.setenv("VQCLIP_HOME", str(tmp_path / "chosen"))
    assert clip_cache() == tmp_path / "chosen" / "clip"
    monkeypatch.delenv("VQCLIP_HOME")
    assert clip_cache() == tmp_path / "hf"


@pytest.mark.parametrize("cfg, expected", [
    ({"hf_hub": "timm/repo/", "url": "https://x/a.pt"},
     ("https://huggingface.co/timm/repo/resolve/main/open_clip_model.safetensors", "open_clip_model.safetensors")),
    ({"hf_hub": "org/repo/open_clip_pytorch_model.bin"},
     ("https://huggingface.co/org/repo/resolve/main/open_clip_model.safetensors", "open_clip_model.safetensors")),
    ({"hf_hub": "org/repo/other.safetensors"},
     ("https://huggingface.co/org/repo/resolve/main/other.safetensors", "other.safetensors")),
    ({"url": "https://host/path/RN50.pt?x=1"}, ("https://host/path/RN50.pt?x=1", "RN50.pt")),
])
def test_the_url_and_file_a_tag_is_fetched_as(cfg, expected):
    assert clip_weights_url(cfg) == expected


def test_a_hand_placed_files_name_is_model_tag_and_the_fetched_suffix(tmp_path):
    assert clip_manual_path("ViT-B-32", "openai", tmp_path) == tmp_path / "clip" / "ViT-B-32-openai.safetensors"
    assert clip_manual_path("RN50", "yfcc15m", tmp_path).name.startswith("RN50-yfcc15m.")


def test_the_hub_logs_are_quiet_only_while_fetching():
    hub, root = logging.getLogger("huggingface_hub"), logging.getLogger()
    hub.setLevel(logging.DEBUG)
    handlers = list(root.handlers)
    try:
        with quiet_hub_logs():
            assert hub.level == logging.ERROR and len(root.handlers) == len(handlers) + 1
        assert hub.level == logging.DEBUG and root.handlers == handlers
    finally:
        hub.setLevel(logging.NOTSET)
