"""Presets as data: every built-in preset's fields are valid as a job would use them, and each rule of a preset file
holds at its limit and refuses the first value past it, naming the file and the key."""

from __future__ import annotations

import pytest
import yaml

from vqclip.errors import VqclipError
from vqclip.models import presets as registry
from vqclip.models.presets import FileSpec, Preset, get_preset, list_presets, load_presets_file, parse_size


def test_every_builtin_preset_is_usable_as_shipped():
    import open_clip

    from vqclip.config import merge_layers
    from vqclip.models.resolve import preset_layer

    presets = list_presets()
    names = [n for p in presets.values() for n in (p.name, *p.aliases)]
    assert len(names) == len(set(names)), "an alias shadows another preset or alias"
    for p in presets.values():
        if p.embedded:
            assert not any(f.urls for f in p.files)
        else:
            assert (p.clip_model, p.clip_pretrained) in open_clip.list_pretrained(), p.name
            assert len({f.filename for f in p.files}) == 2 and p.vqgan_config.filename.endswith(".yaml")
        cfg = merge_layers([("preset", preset_layer(p.name)), ("job", {"prompt": "a circle"})])  # its defaults validate
        assert cfg.clip[0].model and all(t.count("{}") == 1 for t in p.clip_templates)


@pytest.mark.parametrize("value, expected", [
    (0, 0), (12, 12), ("12", 12), ("980 MB", 980 * 10**6), ("1.5 GiB", int(1.5 * 2**30)), ("2kb", 2000),
    ("3 KiB", 3072), (" 7 b ", 7), ("1 TB", 10**12), (None, None)])
def test_sizes_in_bytes_and_units(value, expected):
    assert parse_size(value, "here") == expected


@pytest.mark.parametrize("value", [-1, True, "-3 MB", "10 XB", "MB", "1e3", "1,5 GB", [1], 2.5])
def test_a_size_that_is_no_size_is_refused(value):
    with pytest.raises(VqclipError, match="^here: "):
        parse_size(value, "here")


def _file(tmp_path, **fields) -> FileSpec:
    body = {"description": "d", "vqgan": {"config": {"filename": "a.yaml"}, "checkpoint": {"filename": "b.ckpt",
                                                                                          **fields}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"presets": {"x": body}}))
    return load_presets_file(tmp_path / "p.yaml")["x"].vqgan_checkpoint


@pytest.mark.parametrize("fields, expected", [
    ({"size": 0}, FileSpec("b.ckpt", size=0)),
    ({"sha256": "AB" * 32}, FileSpec("b.ckpt", sha256="ab" * 32)),  # any case, kept lowercase
    ({"urls": "https://example.org/b.ckpt"}, FileSpec("b.ckpt", ("https://example.org/b.ckpt",))),
    ({"urls": ["http://h/1", "https://h/2"]}, FileSpec("b.ckpt", ("http://h/1", "https://h/2"))),
    ({"approx_size": "5 MB"}, FileSpec("b.ckpt", approx_size=5 * 10**6)),
])
def test_a_file_entry_at_its_limits(tmp_path, fields, expected):
    assert _file(tmp_path, **fields) == expected


@pytest.mark.parametrize("fields, key", [
    ({"size": -1}, "size"), ({"size": True}, "size"), ({"size": 1.5}, "size"), ({"sha256": "ab" * 31 + "a"}, "sha256"),
    ({"sha256": "ab" * 32 + "a"}, "sha256"), ({"sha256": "g" * 64}, "sha256"), ({"urls": ["https://"]}, "urls[0]"),
    ({"urls": ["ftp://h/x"]}, "urls[0]"), ({"urls": {"a": 1}}, "urls"), ({"filename": ".."}, "filename"),
    ({"filename": "."}, "filename"), ({"filename": "a\\b"}, "filename"), ({"filename": " "}, "filename"),
    ({"mirror": "x"}, ": unknown key 'mirror'")])
def test_a_file_entry_past_a_limit_names_the_key(tmp_path, fields, key):
    with pytest.raises(VqclipError, match=f"p.yaml: presets.x.vqgan.checkpoint.?{key.replace('[', '.').replace(']', '.')}"):
        _file(tmp_path, **fields)


def _preset(tmp_path, builtin=False, **fields) -> Preset:
    body = {"description": "d", "vqgan": {"config": {"filename": "a.yaml"}, "checkpoint": {"filename": "b.ckpt"}},
            **fields}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"presets": {"x": body}}))
    return load_presets_file(tmp_path / "p.yaml", builtin=builtin)["x"]


@pytest.mark.parametrize("fields, message", [
    ({"clip": {"model": "RN50", "templates": ["a {} and a {}"]}}, "clip.templates"),
    ({"clip": {"model": "RN50", "templates": ["no slot"]}}, "clip.templates"),
    ({"clip": {"model": ""}}, "clip.model: expected a non-empty string"),
    ({"clip": {"model": "RN50", "tag": "x"}}, "clip: unknown key 'tag'"),
    ({"aliases": ["Upper"]}, "aliases: expected a list of lowercase names"),
    ({"aliases": "one"}, "aliases"),
    ({"embedded": "yes"}, "embedded: expected true or false"),
    ({"description": ""}, "description: expected a non-empty string"),
])
def test_a_preset_field_past_its_limit_names_it(tmp_path, fields, message):
    with pytest.raises(VqclipError, match=f"presets.x.{message}"):
        _preset(tmp_path, **fields)


def test_an_embedded_builtin_may_not_list_urls(tmp_path):
    with pytest.raises(VqclipError, match="an embedded preset ships its files, it cannot list URLs"):
        _preset(tmp_path, builtin=True, embedded=True,
                vqgan={"config": {"filename": "a.yaml", "urls": ["https://h/a"]}, "checkpoint": {"filename": "b"}})
    assert _preset(tmp_path, builtin=True, embedded=True).embedded


def test_a_preset_with_one_template_slot_and_the_old_scripts_clip_name(tmp_path):
    p = _preset(tmp_path, clip={"model": "ViT-B/16", "pretrained": "openai", "templates": ["a {} photo"]})
    assert (p.clip_model, p.clip_pretrained, p.clip_templates) == ("ViT-B-16", "openai", ("a {} photo",))


@pytest.mark.parametrize("text, expected", [("version: 2\npresets: {}\n", "version 1, got 2"), ("", {}),
                                            ("presets:\n", {}), ("version: 1\npresets: [a]\n", "presets: expected")])
def test_the_file_level(tmp_path, text, expected):
    (tmp_path / "p.yaml").write_text(text)
    if isinstance(expected, dict):
        assert load_presets_file(tmp_path / "p.yaml") == expected
    else:
        with pytest.raises(VqclipError, match=expected):
            load_presets_file(tmp_path / "p.yaml")


def test_the_download_size_is_known_only_when_the_checkpoints_is(tmp_path):
    p = _preset(tmp_path, vqgan={"config": {"filename": "a", "size": 100}, "checkpoint": {"filename": "b",
                                                                                          "approx_size": 900}})
    assert p.approx_size == 1000
    p = _preset(tmp_path, vqgan={"config": {"filename": "a", "approx_size": 7, "size": 5},
                                 "checkpoint": {"filename": "b", "size": 10, "approx_size": 99}})
    assert p.approx_size == 15  # exact sizes win over approximate ones
    assert _preset(tmp_path, vqgan={"config": {"filename": "a", "size": 100}, "checkpoint": {"filename": "b"}}) \
        .approx_size is None


def test_a_bare_file_name_is_found_in_the_presets_folder(tmp_path):
    p = _preset(tmp_path)
    (tmp_path / "clip.safetensors").write_bytes(b"x")
    assert p.local("clip.safetensors", tmp_path) == str(tmp_path / "clip.safetensors")
    assert p.local("absent.safetensors", tmp_path) == "absent.safetensors"  # not there: left as given
    for name in ("ViT-B-32", "openai", "sub/clip.safetensors", None):
        assert p.local(name, tmp_path) == name


def test_user_files_apply_in_order_and_a_named_one_must_exist(tmp_path, monkeypatch):
    first, second = tmp_path / "1.yaml", tmp_path / "2.yaml"
    for path, text in ((first, "one"), (second, "two")):
        path.write_text(yaml.safe_dump({"presets": {"x": {"description": text, "vqgan": {
            "config": {"filename": "a"}, "checkpoint": {"filename": "b"}}}}}))
    monkeypatch.setenv("VQCLIP_PRESETS", f"{first}:{second}")
    assert get_preset("x").description == "two"
    assert get_preset("  X ").name == "x"
    monkeypatch.setenv("VQCLIP_PRESETS", str(tmp_path / "gone.yaml"))
    with pytest.raises(VqclipError, match="VQCLIP_PRESETS names .*gone.yaml, which is not a file"):
        list_presets()
    monkeypatch.delenv("VQCLIP_PRESETS")
    with pytest.raises(VqclipError, match="gone.yaml: no such presets file"):
        list_presets(presets_file=tmp_path / "gone.yaml")


def test_a_name_nothing_is_close_to_gets_no_suggestion():
    with pytest.raises(VqclipError) as info:
        get_preset("zzzzzz")
    assert "did you mean" not in str(info.value) and "known presets are" in str(info.value)


def test_the_vocabulary_lists_unknown_words_once_in_order():
    vocabulary = registry.Vocabulary(frozenset({"a", "red", "circle"}), "a (red) circle", "a red circle")
    assert vocabulary.unknown(["A red Square", "square_blue circle", "a green"]) == ["square", "blue", "green"]


def test_a_folder_holds_models_when_it_has_a_builtin_file_a_manifest_or_presets(tmp_path):
    assert not registry.holds_models(tmp_path)
    (tmp_path / "other.ckpt").write_bytes(b"x")
    assert not registry.holds_models(tmp_path)
    for name in ("manifest.json", "presets.yaml", "vqgan_imagenet_f16_1024.yaml"):
        (tmp_path / name).write_text("x")
        assert registry.holds_models(tmp_path)
        (tmp_path / name).unlink()
    (tmp_path / "manifest.json").mkdir()  # a folder of that name is no file
    assert not registry.holds_models(tmp_path)
    with pytest.raises(VqclipError, match="is a file, not a folder; point --home at a folder"):
        registry.model_folder(tmp_path / "other.ckpt", "--home")


def test_a_vocabularys_example_must_use_its_words(tmp_path):
    with pytest.raises(VqclipError, match="vocabulary.example: uses square, not in its words"):
        _preset(tmp_path, vocabulary={"words": ["a", "red", "circle"], "grammar": "a red circle",
                                      "example": "a red square"})
