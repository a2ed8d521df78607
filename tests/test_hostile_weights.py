"""Every loader of a weights file, handed a hostile file in each format it reads (torch zip, legacy non-zip pickle,
TorchScript, safetensors with a bad header): nothing of the file runs (the marker its payload would make is never
made) and the load ends in one line. Legit files of each format still load. TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set
throughout, as a user of another tool may have it: a torch.load that does not say weights_only=True would then run
the file."""

from __future__ import annotations

import json
import os
import re
import shlex
import struct
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hubserver import hub_cache_repo
from tiny import CLIP_CFG, vqgan_yaml
from tiny_upscaler import compact_state
from vqclip.errors import UnsafeCheckpointError, VqclipError
from vqclip.nets.checkpoints import load_state_dict, torch_load_safe
from vqclip.nets.clip import load_clip
from vqclip.nets.guide import Guide, GuideSpec, load_guide
from vqclip.nets.upscaler import load_upscaler
from vqclip.nets.vqgan import load_vqgan

GUIDE = GuideSpec(labels=("circle", "square"), widths=(8,), strides=(2,), groups=4, image_size=16)


class _System:
    """Unpickling this runs a shell command that makes the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


class _Exec:
    """Unpickling this runs Python (builtins.exec) that makes the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture(autouse=True)
def _no_weights_only_default(monkeypatch):
    """As a user who set it for another tool: torch.load without an explicit weights_only=True runs the pickle."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


TINY_NAME = "tiny-test-clip"  # the tiny CLIP as an open_clip architecture name (ViT-B-32 would take seconds to build)


@pytest.fixture(autouse=True)
def _tiny_open_clip_name(monkeypatch):
    """open_clip knows the tiny CLIP by name, for this test only."""
    import open_clip.factory

    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, TINY_NAME, CLIP_CFG)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """The legit files each loader needs beside the weights: a VQGAN YAML, a CLIP JSON, a guide JSON."""
    folder = tmp_path_factory.mktemp("legit")
    (folder / "vqgan.yaml").write_text(json.dumps(vqgan_yaml()))
    (folder / "clip.json").write_text(json.dumps(CLIP_CFG))
    (folder / "guide.json").write_text(GUIDE.to_json())
    return {"vqgan": folder / "vqgan.yaml", "clip": folder / "clip.json", "guide": folder / "guide.json"}


def _clip_dir(path: Path, files: dict) -> object:
    """A Hugging Face style CLIP folder whose only weights file is `path`."""
    folder = path.parent / "clip-folder"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CFG}))
    path.rename(folder / "open_clip_pytorch_model.bin")
    return load_clip(f"local-dir:{folder}")


LOADERS = {
    "load_state_dict": lambda path, files: load_state_dict(path),
    "load_state_dict cached": lambda path, files: load_state_dict(path, cache=True),
    "torch_load_safe": lambda path, files: torch_load_safe(path),
    "vqgan": lambda path, files: load_vqgan(files["vqgan"], path),
    "clip json + file": lambda path, files: load_clip(str(files["clip"]), str(path)),
    "clip name + file": lambda path, files: load_clip(TINY_NAME, str(path)),
    "clip folder": _clip_dir,
    "guide": lambda path, files: load_guide(files["guide"], path),
    "upscaler": lambda path, files: load_upscaler(path),
}
SUFFIX = {"clip json + file": ".pt", "clip name + file": ".bin", "upscaler": ".pth", "guide": ".pt"}


def _hostile(path: Path, payload, legacy: bool) -> Path:
    """A torch file holding tensors and `payload`, in the zip format or the legacy (torch < 1.6) one."""
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": payload}, path,
               _use_new_zipfile_serialization=not legacy)
    return path


def _assert_refused_and_nothing_ran(load, path: Path, files: dict, marker: Path) -> VqclipError:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning on the way
        with pytest.raises(VqclipError) as info:
            load(path, files)
    assert not marker.exists(), "the hostile file's code ran"
    assert "\n" not in str(info.value) and str(info.value).count("refused") <= 1, "one line, saying it once"
    return info.value


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_hostile_pickle_is_refused_by_every_loader_and_nothing_runs(tmp_path, files, loader, fmt):
    marker = tmp_path / "pwned"
    path = _hostile(tmp_path / f"evil{SUFFIX.get(loader, '.ckpt')}", _System(marker), legacy=fmt == "legacy")
    error = _assert_refused_and_nothing_ran(LOADERS[loader], path, files, marker)
    assert isinstance(error, UnsafeCheckpointError) and "refused" in str(error)
    assert ("legacy" in str(error)) == (fmt == "legacy")  # each branch says which kind of file it refused
    assert not list(tmp_path.rglob("*.cache.safetensors")), "a refused file must leave no cached copy"


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_an_exec_payload_names_the_call_it_would_make(tmp_path, fmt):
    marker = tmp_path / "pwned"
    path = _hostile(tmp_path / "evil.ckpt", _Exec(marker), legacy=fmt == "legacy")
    error = _assert_refused_and_nothing_ran(LOADERS["load_state_dict"], path, {}, marker)
    assert isinstance(error, UnsafeCheckpointError) and re.search(r"\bexec\b", str(error))
    assert "safe_globals" not in str(error), "torch's advice to allowlist the call is not for a hostile file"


def test_a_plain_pickle_dump_is_refused_and_nothing_runs(tmp_path):
    """pickle.dump's output opens like a legacy torch file (the PROTO opcode): it takes the legacy branch."""
    import pickle

    marker = tmp_path / "pwned"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": _System(marker)}, protocol=2))
    error = _assert_refused_and_nothing_ran(LOADERS["load_state_dict"], tmp_path / "evil.pt", {}, marker)
    assert isinstance(error, UnsafeCheckpointError)


def test_a_hostile_hub_clip_is_refused_and_nothing_runs(tmp_path, monkeypatch, offline_hub):
    """hf-hub:ORG/REPO: open_clip reads the weights it finds in the hub cache, weights-only (open_clip >= 2.29)."""
    import huggingface_hub.constants
    import io

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    marker, buffer = tmp_path / "pwned", io.BytesIO()
    torch.save({"w": torch.zeros(1), "x": _System(marker)}, buffer)
    hub_cache_repo(tmp_path / "hf", "someone/evil-clip", {
        "open_clip_config.json": json.dumps({"model_cfg": CLIP_CFG}).encode(),
        "open_clip_pytorch_model.bin": buffer.getvalue()})
    with pytest.raises(VqclipError, match="could not load CLIP hf-hub:someone/evil-clip") as info:
        load_clip("hf-hub:someone/evil-clip", cache_dir=tmp_path / "hf")
    assert not marker.exists(), "the hostile file's code ran"
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> Path:
    """A TorchScript archive (as OpenAI's original CLIP .pt is one)."""
    path = tmp_path_factory.mktemp("jit") / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 8, 3)), path)
    return path


@pytest.mark.parametrize("loader", [name for name in LOADERS if name != "clip folder"])
def test_a_torchscript_archive_is_refused_by_every_loader(tmp_path, files, scripted, loader):
    path = tmp_path / f"scripted{SUFFIX.get(loader, '.ckpt')}"
    path.write_bytes(scripted.read_bytes())
    with pytest.raises(UnsafeCheckpointError, match="TorchScript archive") as info:
        LOADERS[loader](path, files)
    assert "\n" not in str(info.value)


def _safetensors(header: object, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


ODD_HEADERS = {
    "length past the end": struct.pack("<Q", 10**12) + b"{}",
    "length shorter than 8 bytes": b"\x05\x00",
    "header not JSON": _safetensors(b"not json at all"),
    "header a list": _safetensors([1, 2, 3]),
    "unknown dtype": _safetensors({"w": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)),
    "offsets past the data": _safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(4)),
    "shape and offsets disagree": _safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, bytes(8)),
    "overlapping tensors": _safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)),
    "metadata not strings": _safetensors({"__metadata__": {"x": {"y": 1}},
                                          "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
    "a pickle named .safetensors": None,
}


@pytest.mark.parametrize("case, loader", [*((case, "load_state_dict") for case in ODD_HEADERS),
                                          *((case, loader) for case in ("length past the end", "a pickle named .safetensors")
                                            for loader in ("vqgan", "guide", "upscaler", "clip json + file"))])
def test_a_safetensors_file_with_an_odd_header_is_one_line(tmp_path, files, case, loader):
    path = tmp_path / "odd.safetensors"
    marker = tmp_path / "pwned"
    if ODD_HEADERS[case] is None:
        _hostile(path, _System(marker), legacy=False)
    else:
        path.write_bytes(ODD_HEADERS[case])
    error = _assert_refused_and_nothing_ran(LOADERS[loader], path, files, marker)
    assert "safetensors" in str(error) and str(path) in str(error)


def test_legit_legacy_files_still_load(tmp_path, tiny_vqgan, tiny_clip, files):
    """The legacy (non-zip) format of plain state dicts loads in every loader, to the same tensors as the zip one."""
    from safetensors.torch import load_file

    state = load_state_dict(tiny_vqgan[1])
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": state}, legacy, _use_new_zipfile_serialization=False)
    loaded = load_state_dict(legacy, cache=True)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert (tmp_path / "legacy.cache.safetensors").is_file()  # and its cached copy is written like a zip file's
    vq_zip, vq_legacy = load_vqgan(*tiny_vqgan), load_vqgan(tiny_vqgan[0], legacy)
    z = torch.randn(1, vq_zip.embed_dim, 2, 2)
    assert torch.equal(vq_zip.decode(z), vq_legacy.decode(z))

    clip_state = load_file(tiny_clip[1])
    torch.save(clip_state, tmp_path / "clip.pt", _use_new_zipfile_serialization=False)
    by_legacy, by_safetensors = load_clip(str(tiny_clip[0]), str(tmp_path / "clip.pt")), load_clip(*map(str, tiny_clip))
    assert torch.equal(by_legacy.encode_text(["a red circle"]), by_safetensors.encode_text(["a red circle"]))

    torch.manual_seed(0)
    guide = Guide(GUIDE).eval()
    torch.save(guide.net.state_dict(), tmp_path / "guide.pt", _use_new_zipfile_serialization=False)
    image = torch.rand(1, 3, 16, 16)
    assert torch.equal(load_guide(files["guide"], tmp_path / "guide.pt")(image), guide(image))

    up = compact_state(seed=2)
    torch.save({"params_ema": up}, tmp_path / "up.pth", _use_new_zipfile_serialization=False)
    save_file(up, tmp_path / "up.safetensors")
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(load_upscaler(tmp_path / "up.pth")(x), load_upscaler(tmp_path / "up.safetensors")(x))


def test_a_legacy_file_with_other_content_is_refused_naming_the_format(tmp_path):
    """The legacy branch has no stand-ins: a class that is not tensor rebuilding refuses the file, with the fix."""
    import argparse

    torch.save({"state_dict": {"w": torch.ones(1)}, "args": argparse.Namespace(lr=1)}, tmp_path / "old.ckpt",
               _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match="legacy .*argparse.Namespace.*re-save it with torch>=1.6"):
        load_state_dict(tmp_path / "old.ckpt")
