"""Safe loading: Lightning pickles load without Lightning and without running code; anything else is refused."""

import os
import pickle
import sys
import warnings

import pytest
import torch

from vqclip.nets.checkpoints import load_state_dict, torch_load_safe
from vqclip.errors import UnsafeCheckpointError, VqclipError


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


class _Builtin:
    def __reduce__(self):
        return (eval, ("1+1",))


def test_lightning_ckpt_loads_without_pytorch_lightning(tiny_vqgan, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)  # any import of it would now fail
    state = load_state_dict(tiny_vqgan[1])
    assert "decoder.conv_out.weight" in state and "quantize.embedding.weight" in state
    assert all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize("payload", ["makedirs", "eval"])
def test_code_running_pickle_is_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = _RunsCode(str(marker)) if payload == "makedirs" else _Builtin()
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": evil}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load_state_dict(path)
    assert not marker.exists()


def test_reference_only_global_is_harmless_but_calling_it_is_refused(tmp_path):
    """A class named in the pickle may be a dict key; instantiating an unknown class is refused."""
    import collections

    class Unknown(collections.UserDict):
        pass

    Unknown.__module__ = "somepkg.mod"
    Unknown.__qualname__ = "Unknown"
    mod = type(sys)("somepkg.mod")
    mod.Unknown = Unknown
    sys.modules["somepkg.mod"] = sys.modules["somepkg"] = mod
    try:
        torch.save({"state_dict": {"w": torch.ones(1)}, "keyed": {Unknown: 1}}, tmp_path / "ok.ckpt")
        torch.save({"state_dict": {"w": torch.ones(1)}, "obj": Unknown(a=1)}, tmp_path / "bad.ckpt")
    finally:
        del sys.modules["somepkg.mod"], sys.modules["somepkg"]
    assert load_state_dict(tmp_path / "ok.ckpt")["w"].item() == 1
    with pytest.raises(UnsafeCheckpointError, match="somepkg.mod.Unknown"):
        load_state_dict(tmp_path / "bad.ckpt")


def test_safetensors_cache_written_once_and_reused(tiny_vqgan, tmp_path, monkeypatch):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(tiny_vqgan[1].read_bytes())
    first = load_state_dict(ckpt, cache=True)
    cached = tmp_path / "model.cache.safetensors"
    assert cached.is_file()
    monkeypatch.setattr("vqclip.nets.checkpoints.torch_load_safe", lambda p: pytest.fail("unpickled again"))
    second = load_state_dict(ckpt, cache=True)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_stale_cache_is_ignored(tiny_vqgan, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(tiny_vqgan[1].read_bytes())
    load_state_dict(ckpt, cache=True)
    torch.save({"state_dict": {"only": torch.zeros(3)}}, ckpt)  # the source changes: size and mtime differ
    assert list(load_state_dict(ckpt, cache=True)) == ["only"]


@pytest.mark.parametrize("content,match", [(b"not a zip at all", "not a PyTorch checkpoint \\(neither"),
                                            (b"PK\x03\x04broken", "not a readable checkpoint \\(a damaged zip"),
                                            (b"this is not a checkpoint\n", "not a PyTorch checkpoint"),
                                            (b"\x80\x02garbage", "refused|not a readable"),  # a pickle's start, then junk
                                            (pickle.dumps(5, protocol=4), "not a readable")])  # a plain pickle
def test_corrupt_files_give_one_line(tmp_path, content, match):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning on the way
        with pytest.raises(VqclipError, match=match) as info:
            load_state_dict(path)
    assert "\n" not in str(info.value)


def test_truncated_ckpt_and_safetensors(tiny_vqgan, tmp_path):
    data = tiny_vqgan[1].read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(VqclipError, match="re-download"):
        load_state_dict(tmp_path / "cut.ckpt")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(VqclipError, match="safetensors"):
        load_state_dict(tmp_path / "cut.safetensors")


def test_missing_and_unknown_format(tmp_path):
    with pytest.raises(VqclipError, match="no such file"):
        load_state_dict(tmp_path / "nope.ckpt")
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(VqclipError, match="unknown weights format"):
        load_state_dict(tmp_path / "w.h5")


def test_lightning_hyper_parameters_do_not_refuse_the_file(tmp_path):
    """omegaconf configs, paths and namespaces that Lightning saves in hyper_parameters become inert placeholders."""
    import argparse
    import pathlib

    from omegaconf import OmegaConf

    hp = {"ddconfig": OmegaConf.create({"ch": 32, "ch_mult": [1, 2]}), "ckpt_path": pathlib.Path("/x/last.ckpt"),
          "args": argparse.Namespace(lr=1.0), "ignore_keys": OmegaConf.create([])}
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": hp, "hparams_name": "kwargs"},
               tmp_path / "hp.ckpt")
    assert list(load_state_dict(tmp_path / "hp.ckpt")) == ["w"]


@pytest.mark.parametrize("module", ["lightning_fabric.utilities.data", "pytorch_lightning.utilities.parsing"])
def test_lightning_attribute_dicts_load_as_plain_dicts(tmp_path, module):
    """Lightning's AttributeDict (hparams of older and newer releases) keeps its items and becomes a dict."""
    attribute_dict = pytest.importorskip(module).AttributeDict
    hp = attribute_dict(lr=4.5e-6, ddconfig=attribute_dict(ch=32, ch_mult=[1, 2]))
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": hp}, tmp_path / "ad.ckpt")
    loaded = torch_load_safe(tmp_path / "ad.ckpt")
    assert loaded["hyper_parameters"] == {"lr": 4.5e-6, "ddconfig": {"ch": 32, "ch_mult": [1, 2]}}
    assert type(loaded["hyper_parameters"]) is dict and type(loaded["hyper_parameters"]["ddconfig"]) is dict
    assert list(load_state_dict(tmp_path / "ad.ckpt")) == ["w"]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated
def test_torchscript_archive_is_refused_by_name(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "jit.pt")
    with pytest.raises(UnsafeCheckpointError, match="TorchScript archive") as info:
        load_state_dict(tmp_path / "jit.pt")
    assert "\n" not in str(info.value)
