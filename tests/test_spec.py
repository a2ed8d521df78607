"""How a job names a CLIP: each form read from the text alone (as spec.py's docstring states it), the values that
mean random weights, and each refusal in one line."""

from __future__ import annotations

import os

import pytest

from vqclip.errors import VqclipError
from vqclip.models.spec import ClipSpec, check_model_name, openai_name


@pytest.mark.parametrize("model, pretrained, form, name, weights", [
    ("ViT-B-32", "openai", "name", "ViT-B-32", "openai"),
    (" ViT-B-32 ", " openai ", "name", "ViT-B-32", "openai"),
    ("ViT-B-32", "w.safetensors", "name", "ViT-B-32", "w.safetensors"),
    ("ViT-B-32", "dir/w", "name", "ViT-B-32", "dir/w"),
    ("arch.json", None, "json", "arch.json", None),
    ("models/Arch.JSON", "w.pt", "json", "models/Arch.JSON", "w.pt"),
    ("local-dir:clip", None, "dir", "clip", None),
    ("./clip", None, "dir", "./clip", None),
    ("models/clip", "w.bin", "dir", "models/clip", "w.bin"),
    ("hf-hub:org/repo", None, "hub", "org/repo", None),
    ("hf-hub:org/repo/", "none", "hub", "org/repo", None),
    ("ViT-B/32", "openai", "name", "ViT-B-32", "openai"),  # OpenAI's name, not a path
    ("./ViT-B/32", None, "dir", "./ViT-B/32", None),  # the folder of that name
])
def test_each_form_is_read_from_the_text(model, pretrained, form, name, weights):
    spec = ClipSpec.parse(model, pretrained)
    assert (spec.form, spec.model, spec.pretrained) == (form, name, weights)


def test_a_home_relative_path_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ClipSpec.parse("~/clip").model == str(tmp_path / "clip")
    assert ClipSpec.parse("local-dir:~/c").model == str(tmp_path / "c")
    assert ClipSpec.parse("~/a.json").model == str(tmp_path / "a.json")


@pytest.mark.parametrize("value", [None, "", "  ", "none", "None", "NULL", "random", " Random "])
def test_values_that_mean_random_weights(value):
    assert ClipSpec.parse("ViT-B-32", value).pretrained is None


@pytest.mark.parametrize("pretrained, is_file", [("openai", False), ("w.safetensors", True), ("w.PT", True),
                                                 ("w.ckpt", True), ("w.pth", True), ("w.bin", True), ("a/b", True),
                                                 ("laion2b_s34b_b79k", False), (None, False)])
def test_a_pretrained_value_names_a_file_by_a_separator_or_a_weights_suffix(pretrained, is_file):
    assert ClipSpec.parse("ViT-B-32", pretrained).weights_file is is_file
    if pretrained:  # in a JSON or folder form any pretrained value is a file
        assert ClipSpec.parse("a.json", pretrained).weights_file


@pytest.mark.parametrize("model, pretrained, expected", [
    ("", None, "clip.model: expected an open_clip name"),
    ("   ", None, "clip.model: expected"),
    (None, None, "clip.model: expected"),
    ("ViT-B-32", 3, "clip.pretrained: expected a tag or a weights file, got 3"),
    ("hf-hub:org/repo", "openai", "hf-hub:org/repo brings its own weights; drop pretrained 'openai'"),
    ("hf-hub:", None, "names no repository; write hf-hub:ORG/REPO"),
    ("hf-hub:/", None, "names no repository"),
])
def test_what_a_form_cannot_take_is_one_line(model, pretrained, expected):
    with pytest.raises(VqclipError, match=expected.replace("(", r"\(")):
        ClipSpec.parse(model, pretrained)


@pytest.mark.parametrize("given, expected", [("ViT-B/32", "ViT-B-32"), ("vit-b/32", "ViT-B-32"),
                                             ("ViT-L/14@336px", "ViT-L-14-336"), ("ViT-bigG/14", "ViT-bigG-14"),
                                             ("ViT-B-32", None), ("RN50", None), ("ViT-B/32x", None), (7, None)])
def test_openai_names(given, expected):
    assert openai_name(given) == expected


def test_an_unknown_name_suggests_the_close_one_and_a_local_folder(tmp_path, monkeypatch):
    check_model_name("ViT-B-32")
    with pytest.raises(VqclipError, match="unknown CLIP model 'vit-b-32': did you mean 'ViT-B-32'"):
        check_model_name("vit-b-32")
    with pytest.raises(VqclipError) as info:
        check_model_name("zzzz")
    assert "did you mean" not in str(info.value) and "for the folder" not in str(info.value)
    monkeypatch.chdir(tmp_path)
    os.mkdir("myclip")
    with pytest.raises(VqclipError, match="for the folder or file here, write ./myclip"):
        check_model_name("myclip")


@pytest.mark.parametrize("model, described", [("ViT-B-32", "ViT-B-32"), ("hf-hub:org/repo", "org/repo"),
                                              ("models/clip/", "clip"), ("a/b/arch.json", "arch.json")])
def test_a_short_name_for_notices(model, described):
    assert ClipSpec.parse(model).describe() == described
