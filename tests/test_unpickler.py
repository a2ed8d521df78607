"""The restricted unpickler's decisions, name by name: what Lightning pickles beside the weights is rebuilt as data or
an inert placeholder, a name just outside an allowed prefix is refused, and which tensors come out (Lightning's
`state_dict`, a bare dict, the safetensors cache tied to its source)."""

from __future__ import annotations

import collections
import os
import pathlib
import shutil
import sys
import types

import numpy as np
import pytest
import torch

from vqclip.errors import UnsafeCheckpointError, VqclipError
from vqclip.nets.checkpoints import load_state_dict, torch_load_safe


@pytest.fixture
def foreign_module(monkeypatch):
    """A class `Thing` in module `name` (made for the test where no such module exists) that pickle saves by
    reference."""

    def make(name: str) -> type:
        thing = type("Thing", (), {"__module__": name})
        parts = name.split(".")
        for i in range(len(parts)):
            prefix = ".".join(parts[: i + 1])
            if prefix not in sys.modules:
                monkeypatch.setitem(sys.modules, prefix, types.ModuleType(prefix))
        monkeypatch.setattr(sys.modules[name], "Thing", thing, raising=False)
        return thing

    return make


def _save(tmp_path, extra, name="m.ckpt"):
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": extra}, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("module", ["omegaconf.listconfig", "pathlib", "typing"])
def test_a_discarded_class_loads_as_a_placeholder_that_keeps_nothing(tmp_path, foreign_module, module):
    """Lightning's hyper-parameter classes (omegaconf, pathlib, argparse.Namespace, typing) become empty stand-ins."""
    thing = foreign_module(module)
    obj = thing()
    obj.payload = "kept?"
    loaded = torch_load_safe(_save(tmp_path, obj))
    assert type(loaded["extra"]).__module__ == "vqclip.discarded" and not vars(loaded["extra"])
    assert list(load_state_dict(tmp_path / "m.ckpt")) == ["w"]


@pytest.mark.parametrize("module", ["omegaconfx", "pathlibx.evil", "typingx", "argparse_evil", "numpyx.core"])
def test_a_name_just_outside_an_allowed_prefix_is_refused(tmp_path, foreign_module, module):
    path = _save(tmp_path, foreign_module(module)())
    with pytest.raises(UnsafeCheckpointError, match=f"would call {module}.Thing"):
        load_state_dict(path)


def test_only_argparse_namespace_is_discarded_not_the_rest_of_argparse(tmp_path):
    import argparse

    path = _save(tmp_path, argparse.Action(["--x"], "x"))
    with pytest.raises(UnsafeCheckpointError, match="would call argparse.Action"):
        load_state_dict(path)


@pytest.mark.parametrize("module", ["omegaconf.helpers", "pathlib", "typing"])
def test_a_discarded_function_called_by_the_pickle_runs_nothing(tmp_path, foreign_module, module):
    """A function under a discarded prefix, called by the pickle: the stand-in is called, never the function."""
    marker = tmp_path / "pwned"
    foreign_module(module)

    def touch(path):
        pathlib.Path(path).touch()

    touch.__module__, touch.__qualname__ = module, "touch_for_test"
    setattr(sys.modules[module], "touch_for_test", touch)

    class Touches:
        def __reduce__(self):
            return (touch, (str(marker),))

    try:
        loaded = torch_load_safe(_save(tmp_path, Touches()))
    finally:
        delattr(sys.modules[module], "touch_for_test")
    assert not marker.exists()
    assert type(loaded["extra"]).__module__ == "vqclip.discarded"


def test_numpy_values_lightning_saves_load_as_the_same_numbers(tmp_path):
    extra = {"scalar": np.float64(0.25), "int": np.int64(7), "array": np.arange(6, dtype=np.float32).reshape(2, 3),
             "bool": np.bool_(True), "text": np.str_("val/rec_loss")}
    loaded = torch_load_safe(_save(tmp_path, extra))["extra"]
    for key, value in extra.items():
        assert type(loaded[key]) is type(value) and np.array_equal(loaded[key], value), key


def test_a_defaultdict_loads_as_a_plain_dict_and_its_factory_is_never_called(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    factory = collections.defaultdict(shutil.rmtree, {"a": 1, "b": [2]})  # a factory that would delete a folder
    loaded = torch_load_safe(_save(tmp_path, factory))["extra"]
    assert type(loaded) is dict and loaded == {"a": 1, "b": [2]}
    assert victim.is_dir()


def test_a_referenced_unknown_function_is_fine_until_called(tmp_path):
    """shutil.rmtree kept as a value (not called) is a harmless stand-in; calling it refuses, naming it."""
    loaded = torch_load_safe(_save(tmp_path, {"fn": shutil.rmtree}))
    assert loaded["extra"]["fn"].__module__ == "vqclip.inert"
    with pytest.raises(UnsafeCheckpointError, match="refused: unpickling it would call shutil.rmtree"):
        loaded["extra"]["fn"](str(tmp_path))
    assert tmp_path.is_dir()


@pytest.mark.parametrize("content, exact", [
    ({"state_dict": {"a": torch.ones(1), "b": torch.zeros(2)}, "epoch": 3}, {"a", "b"}),  # Lightning
    ({"a": torch.ones(1), "b": torch.zeros(2)}, {"a", "b"}),  # a bare state dict
    ({"state_dict": torch.ones(1), "a": torch.zeros(1)}, {"state_dict", "a"}),  # `state_dict` no dict: the dict itself
    ({"a": torch.ones(1), "step": 3, 5: torch.ones(1), "names": ["x"]}, {"a"}),  # only str -> tensor entries
])
def test_the_tensors_of_a_file(tmp_path, content, exact):
    torch.save(content, tmp_path / "t.pt")
    assert set(load_state_dict(tmp_path / "t.pt")) == exact


@pytest.mark.parametrize("content", [{}, {"state_dict": {}}, [torch.ones(1)], torch.ones(2)])
def test_a_file_without_a_state_dict_is_one_line(tmp_path, content):
    torch.save(content, tmp_path / "t.pt")
    with pytest.raises(VqclipError, match="holds no state_dict of tensors"):
        load_state_dict(tmp_path / "t.pt")


def test_suffixes_are_read_in_any_case_and_a_folder_is_no_file(tmp_path):
    torch.save({"w": torch.ones(1)}, tmp_path / "upper.CKPT")
    assert list(load_state_dict(tmp_path / "upper.CKPT")) == ["w"]
    (tmp_path / "dir.ckpt").mkdir()
    with pytest.raises(VqclipError, match="is a folder"):
        load_state_dict(tmp_path / "dir.ckpt")


def test_the_legacy_branch_tells_damage_from_danger(tmp_path):
    """A legacy file cut short is unreadable (re-download), not refused as unsafe; a whole one loads."""
    torch.save({"w": torch.arange(4.0)}, tmp_path / "whole.pt", _use_new_zipfile_serialization=False)
    assert torch.equal(load_state_dict(tmp_path / "whole.pt")["w"], torch.arange(4.0))
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:40])
    with pytest.raises(VqclipError, match="cut.pt: not a readable checkpoint \\(EOFError\\); re-download") as info:
        load_state_dict(tmp_path / "cut.pt")
    assert not isinstance(info.value, UnsafeCheckpointError)


def _bump_mtime(path):
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_a_cache_is_only_written_when_asked_and_follows_a_same_size_rewrite(tmp_path):
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": {"w": torch.ones(3)}}, ckpt)
    load_state_dict(ckpt)
    assert not (tmp_path / "m.cache.safetensors").exists()
    assert torch.equal(load_state_dict(ckpt, cache=True)["w"], torch.ones(3))
    assert (tmp_path / "m.cache.safetensors").is_file()
    size = ckpt.stat().st_size
    torch.save({"state_dict": {"w": torch.full((3,), 2.0)}}, ckpt)  # same size, other values, a later mtime
    _bump_mtime(ckpt)
    assert ckpt.stat().st_size == size
    assert torch.equal(load_state_dict(ckpt, cache=True)["w"], torch.full((3,), 2.0))


def test_a_cache_of_another_file_of_the_same_name_is_not_used(tmp_path):
    """The stamp names the source: a cache copied in beside another model.ckpt is not taken for its copy."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    for folder, value in (("a", 1.0), ("b", 5.0)):
        torch.save({"w": torch.full((2,), value)}, tmp_path / folder / "m.ckpt")
    load_state_dict(tmp_path / "a" / "m.ckpt", cache=True)
    os.replace(tmp_path / "a" / "m.cache.safetensors", tmp_path / "b" / "m.cache.safetensors")
    _bump_mtime(tmp_path / "b" / "m.ckpt")
    assert torch.equal(load_state_dict(tmp_path / "b" / "m.ckpt", cache=True)["w"], torch.full((2,), 5.0))


def test_a_damaged_or_unwritable_cache_falls_back_to_the_source(tmp_path):
    ckpt = tmp_path / "m.ckpt"
    torch.save({"w": torch.ones(2)}, ckpt)
    (tmp_path / "m.cache.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    assert torch.equal(load_state_dict(ckpt, cache=True)["w"], torch.ones(2))
    assert load_state_dict(tmp_path / "m.cache.safetensors")["w"].shape == (2,)  # rewritten whole
    other = tmp_path / "o.ckpt"
    torch.save({"w": torch.zeros(2)}, other)
    (tmp_path / "o.cache.safetensors").mkdir()  # a folder where the cache would go: it cannot be written
    assert torch.equal(load_state_dict(other, cache=True)["w"], torch.zeros(2))


def test_without_cache_the_copy_beside_the_file_is_never_read(tmp_path):
    """Even a copy whose stamp matches (here one forged with other values): cache=False reads the file itself."""
    from safetensors.torch import save_file

    from vqclip.nets.checkpoints import CACHE_SOURCE_KEY, _cache_stamp

    ckpt = tmp_path / "m.ckpt"
    torch.save({"w": torch.ones(2)}, ckpt)
    save_file({"w": torch.full((2,), 9.0)}, tmp_path / "m.cache.safetensors",
              metadata={CACHE_SOURCE_KEY: _cache_stamp(ckpt)})
    assert torch.equal(load_state_dict(ckpt)["w"], torch.ones(2))
    assert torch.equal(load_state_dict(ckpt, cache=True)["w"], torch.full((2,), 9.0))  # the copy, when asked
