"""ModelCache: each network is loaded once per (files, device) and handed out again; a change of any part of the key
loads anew; a job's models come with their weights, judges and guide in place."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vqclip.nets.load as load
from vqclip.models.resolve import ClipFiles, JobFiles


@pytest.fixture
def calls(monkeypatch) -> list:
    """The loaders replaced by recorders that return a fresh object per call."""
    seen = []

    def recorder(kind):
        def loader(*args, **kwargs):
            seen.append((kind, args, kwargs))
            return object()

        return loader

    monkeypatch.setattr(load, "load_vqgan", recorder("vqgan"))
    monkeypatch.setattr(load, "load_clip", recorder("clip"))
    monkeypatch.setattr(load, "load_guide", recorder("guide"))
    return seen


CPU, META = torch.device("cpu"), torch.device("meta")


def test_a_network_is_loaded_once_per_files_and_device(calls):
    cache = load.ModelCache()
    first = cache.vqgan("a.yaml", "a.ckpt", CPU)
    assert cache.vqgan("a.yaml", "a.ckpt", CPU) is first and len(calls) == 1
    for other in (("b.yaml", "a.ckpt", CPU), ("a.yaml", "b.ckpt", CPU), ("a.yaml", "a.ckpt", META)):
        assert cache.vqgan(*other) is not first
    assert len(calls) == 4
    assert cache.vqgan(Path("a.yaml"), Path("a.ckpt"), CPU) is first  # a path and its text are the same file


def test_clips_are_keyed_by_model_weights_and_device_and_loaded_as_resolved(calls):
    cache = load.ModelCache()
    files = ClipFiles("ViT-B-32", "/w/b32.safetensors", Path("/cache"), like="openai", weight=0.5)
    clip = cache.clip(files, CPU)
    assert calls[-1] == ("clip", ("ViT-B-32", "/w/b32.safetensors", CPU, Path("/cache")), {"like": "openai"})
    assert cache.clip(ClipFiles("ViT-B-32", "/w/b32.safetensors", Path("/cache"), weight=2.0), CPU) is clip
    assert cache.clip(ClipFiles("ViT-B-32", "/w/other.safetensors", Path("/cache")), CPU) is not clip
    assert cache.clip(files, META) is not clip and len(calls) == 3


def test_a_jobs_models_carry_their_weights_judges_and_guide(calls):
    cache = load.ModelCache()
    a, b = ClipFiles("A", None, Path("/c"), weight=1.0), ClipFiles("B", None, Path("/c"), weight=0.25)
    files = JobFiles("v.yaml", "v.ckpt", [a, b], [b], ("g.json", "g.safetensors"))
    models = cache.models(files, CPU)
    assert [w for _, w in models.clips] == [1.0, 0.25] and [w for _, w in models.judges] == [0.25]
    assert models.judges[0][0] is models.clips[1][0]  # a judge that is also a scorer is loaded once
    assert models.guide is not None and calls[-1] == ("guide", ("g.json", "g.safetensors", CPU), {})
    assert cache.models(files, CPU).guide is models.guide
    assert load.ModelCache().models(JobFiles("v.yaml", "v.ckpt", [a]), CPU).guide is None
