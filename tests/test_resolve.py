"""From a job to its files: named VQGAN files or the preset's, each CLIP as open_clip will load it (a tag's local copy
standing in for the tag), the judges only when there is a pick, the guide only when it counts; offline, one error
naming every file a preset lacks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fileserver import dead_url
from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.models.download import DownloadError
from vqclip.models.resolve import job_files, preset_clip, resolve_clip, resolve_preset
from vqclip.models.presets import get_preset


def _cfg(tiny_job, **over):
    return merge_layers([("tiny", tiny_job), ("job", {"prompt": "a circle", **over})])


def test_a_jobs_named_files_and_its_clips(tiny_job, tiny_clip):
    files = job_files(_cfg(tiny_job, clip=[{"model": str(tiny_clip[0]), "pretrained": str(tiny_clip[1]),
                                            "weight": 0.7}]))
    assert (files.vqgan_config, files.vqgan_checkpoint) == (tiny_job["vqgan"]["config"],
                                                            tiny_job["vqgan"]["checkpoint"])
    assert [(c.model, c.pretrained, c.weight) for c in files.clips] == [(str(tiny_clip[0]), str(tiny_clip[1]), 0.7)]
    assert files.judges == [] and files.guide is None


def test_one_vqgan_file_without_the_other_is_one_line(tiny_job):
    for half in ({"config": tiny_job["vqgan"]["config"], "checkpoint": None},
                 {"config": None, "checkpoint": tiny_job["vqgan"]["checkpoint"]}):
        with pytest.raises(VqclipError, match="vqgan: give both config \\(YAML\\) and checkpoint, or neither"):
            job_files(_cfg(tiny_job, vqgan=half))


def test_judges_are_resolved_only_when_there_is_a_pick(tiny_job, tiny_clip):
    judge = [{"model": str(tiny_clip[0]), "pretrained": "none", "weight": 2.0}]
    assert job_files(_cfg(tiny_job, candidates={"n": 1, "clip": judge})).judges == []
    judges = job_files(_cfg(tiny_job, candidates={"n": 2, "clip": judge})).judges
    assert [(j.model, j.pretrained, j.weight) for j in judges] == [(str(tiny_clip[0]), None, 2.0)]


@pytest.mark.parametrize("weight, used", [(0.0, False), (0.01, True)])
def test_the_guide_is_a_jobs_file_only_when_its_weight_counts(tiny_job, weight, used):
    files = job_files(_cfg(tiny_job, guide={"model": "g.json", "weights": "g.safetensors", "weight": weight}))
    assert files.guide == (("g.json", "g.safetensors") if used else None)


@pytest.mark.parametrize("model, pretrained, expected", [
    ("hf-hub:org/repo", None, ("hf-hub:org/repo", None, None)),
    ("ViT-B/32", "none", ("ViT-B-32", None, None)),
    ("ViT-B-32", "w.safetensors", ("ViT-B-32", "w.safetensors", None)),
    ("ViT-B-32", "openai", ("ViT-B-32", "openai", None)),  # nothing on disk: the tag, fetched by open_clip later
    ("arch.json", "w.pt", ("arch.json", "w.pt", None)),
])
def test_how_each_clip_form_is_handed_to_the_loader(tmp_path, offline_hub, model, pretrained, expected):
    files = resolve_clip(model, pretrained, 0.5, home_dir=tmp_path)
    assert (files.model, files.pretrained, files.like) == expected and files.weight == 0.5
    assert files.cache_dir == tmp_path / "clip"


def test_a_tags_local_copy_stands_in_for_it_and_keeps_its_name(tmp_path, offline_hub):
    placed = tmp_path / "clip" / "ViT-B-32-openai.safetensors"
    placed.parent.mkdir()
    placed.write_bytes(b"w")
    files = resolve_clip("ViT-B-32", "openai", home_dir=tmp_path)
    assert (files.model, files.pretrained, files.like) == ("ViT-B-32-quickgelu", str(placed), "openai")


def _preset_home(tmp_path, urls=True) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    body = {"description": "d", "vqgan": {
        "config": {"filename": "t.yaml", "urls": [dead_url("/t.yaml")] if urls else []},
        "checkpoint": {"filename": "t.ckpt", "urls": [dead_url("/t.ckpt")] if urls else []}},
        "clip": {"model": "ViT-B-32", "pretrained": "openai"}}
    (home / "presets.yaml").write_text(yaml.safe_dump({"presets": {"local": body}}))
    return home


def test_offline_every_missing_file_of_a_preset_is_named_at_once(tmp_path, offline_hub):
    home = _preset_home(tmp_path)
    with pytest.raises(DownloadError) as info:
        resolve_preset("local", home=home, progress=False, timeout=2)
    names = [m.filename for m in info.value.missing]
    assert names == ["t.yaml", "t.ckpt", "CLIP ViT-B-32 (openai) weights"]
    assert f"put it at {home / 'clip' / 'ViT-B-32-openai.safetensors'}" in str(info.value)


def test_a_file_already_there_is_verified_not_fetched(tmp_path, offline_hub):
    home = _preset_home(tmp_path)
    for name in ("t.yaml", "t.ckpt"):
        (home / name).write_bytes(name.encode())
    resolved = resolve_preset("local", home=home, progress=False, fetch_clip_weights=False)
    assert resolved.vqgan_checkpoint == home / "t.ckpt"
    assert "t.ckpt" in (home / "manifest.json").read_text()  # recorded on first sight


def test_without_downloads_the_headline_says_so_and_counts(tmp_path):
    home = _preset_home(tmp_path)
    (home / "t.yaml").write_bytes(b"x")
    with pytest.raises(DownloadError, match="model 'local' needs 1 file not on disk and downloads are off"):
        resolve_preset("local", home=home, download=False, fetch_clip_weights=False)


def test_an_embedded_presets_clip_must_be_in_its_folder(tmp_path, monkeypatch):
    from vqclip.models import presets as registry

    monkeypatch.setattr(registry, "EMBEDDED_DIR", tmp_path)
    mini = get_preset("mini")
    with pytest.raises(VqclipError, match="the embedded 'mini' CLIP is missing: .*clip.json, .*clip.safetensors"):
        preset_clip(mini)
    (tmp_path / "clip.json").write_text("{}"), (tmp_path / "clip.safetensors").write_bytes(b"w")
    assert preset_clip(mini) == (str(tmp_path / "clip.json"), str(tmp_path / "clip.safetensors"))
