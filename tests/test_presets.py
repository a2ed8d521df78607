"""Preset registry: built-ins, strict user YAML, home directory, resolving presets to verified local files."""

from __future__ import annotations

import re
import textwrap
import urllib.parse
from pathlib import Path

import pytest
import yaml

from fileserver import dead_url, payload, sha
from vqclip.models import presets as registry
from vqclip.models.download import DownloadError
from vqclip.models.integrity import CorruptFileError
from vqclip.errors import VqclipError
from vqclip.models.presets import DEFAULT_PRESET, FileSpec, get_preset, home, list_presets, load_presets_file
from vqclip.models.resolve import local_embedded, resolve_preset


def embedded_mini(monkeypatch, folder: Path, defaults: dict) -> None:
    """The built-in presets as shipped, with the embedded `mini` preset's folder at `folder` and its defaults."""
    shipped = yaml.safe_load(registry.BUILTIN_FILE.read_text())
    shipped["presets"]["mini"]["defaults"] = defaults
    (folder / "presets.yaml").write_text(yaml.safe_dump(shipped))
    monkeypatch.setattr(registry, "BUILTIN_FILE", folder / "presets.yaml")
    monkeypatch.setattr(registry, "EMBEDDED_DIR", folder)

def web(host: str, path: str) -> str:
    """An https URL that tests never fetch (they only check it is carried into messages and presets)."""
    return urllib.parse.urlunsplit(("https", host, path, "", ""))


REQUIRED = {"imagenet-16384", "imagenet-1024", "openimages-8192", "wikiart-16384", "sflckr", "coco", "faceshq", "mini"}




def write_presets(path: Path, presets: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "presets": presets}))
    return path


def local_preset(config_urls, ckpt_urls, **extra) -> dict:
    body = {"description": "a test model", "vqgan": {
        "config": {"filename": "t.yaml", "urls": list(config_urls)},
        "checkpoint": {"filename": "t.ckpt", "urls": list(ckpt_urls)}}}
    body.update(extra)
    return body


def test_builtin_presets_are_complete_and_well_formed():
    presets = list_presets()
    assert REQUIRED <= presets.keys() and DEFAULT_PRESET == "imagenet-16384"
    for p in presets.values():
        assert p.origin == "built-in" and p.description and p.licence and p.source
        if p.embedded:
            continue
        for spec in p.files:
            assert spec.urls and all(urllib.parse.urlsplit(u).scheme in ("http", "https") for u in spec.urls)
            assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
            assert "/" not in spec.filename
    assert presets["openimages-8192"].vqgan_checkpoint.filename == "vqgan_gumbel_f8_8192.ckpt"
    assert presets["imagenet-16384"].approx_size > 900_000_000


def test_default_clip_is_a_real_open_clip_pretrained_pair():
    import open_clip

    p = get_preset(DEFAULT_PRESET)
    assert (p.clip_model, p.clip_pretrained) == ("ViT-B-32", "openai")
    assert (p.clip_model, p.clip_pretrained) in open_clip.list_pretrained()


def test_unknown_name_lists_known_presets_and_suggests():
    with pytest.raises(VqclipError, match="imagenet-16384.*mini") as info:
        get_preset("imagenet-1638")
    assert "did you mean 'imagenet-16384'" in str(info.value)


def test_aliases_and_case_resolve_to_the_preset():
    assert get_preset("vqgan_imagenet_f16_16384").name == "imagenet-16384"
    assert get_preset("WikiArt-16384").name == "wikiart-16384"
    assert get_preset("gumbel_8192").name == "openimages-8192"


def test_home_is_env_var_else_checkpoints_with_files_else_the_user_cache(no_chosen_home, monkeypatch):
    from vqclip.models.presets import home_choice

    cwd, cache = no_chosen_home["cwd"], no_chosen_home["user_cache"]
    assert home_choice() == (cache, home_choice()[1]) and "per-user cache" in home_choice()[1]
    (cwd / "checkpoints").mkdir()  # an empty ./checkpoints is not a reason to fetch 1.6 GB into it
    (cwd / "checkpoints" / "epoch=3.ckpt").write_bytes(b"x")  # nor another project's checkpoints
    assert home() == cache
    (cwd / "checkpoints" / "vqgan_imagenet_f16_16384.ckpt").write_bytes(b"x")  # what the old scripts left there
    assert home_choice() == (cwd / "checkpoints", "./checkpoints here holds model files")
    elsewhere = cwd / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # another folder: the same user cache, not a new ./checkpoints
    assert home() == cache
    monkeypatch.setenv("VQCLIP_HOME", str(cwd / "models"))
    assert home_choice() == (cwd / "models", "set by VQCLIP_HOME")


def test_user_presets_from_home_env_and_explicit_file(tmp_path, monkeypatch):
    h = tmp_path / "h"
    write_presets(h / "presets.yaml", {"mine": local_preset([web("example.org", "/a.yaml")], [])})
    env_file = write_presets(tmp_path / "env.yaml", {"imagenet-16384": local_preset([], [])})
    flag_file = write_presets(tmp_path / "flag.yaml", {"other": local_preset([], [], clip={"model": "RN50"})})
    monkeypatch.setenv("VQCLIP_PRESETS", str(env_file))
    presets = list_presets(home=h, presets_file=flag_file)
    assert presets["mine"].origin == str(h / "presets.yaml")
    assert presets["imagenet-16384"].description == "a test model"  # a user preset replaces a built-in
    assert presets["other"].clip_model == "RN50" and presets["other"].clip_pretrained is None
    assert presets["mine"].clip_model == "ViT-B-32"  # default CLIP when none is named


BROKEN = {
    "unknown top key": ("presets: {}\nextra: 1\n", "unknown key 'extra'"),
    "unknown preset key": ("presets:\n  x: {description: d, vqgan: {config: {filename: a}, checkpoint: {filename: b}},"
                           " colour: red}\n", "presets.x: unknown key 'colour'"),
    "missing checkpoint": ("presets:\n  x: {description: d, vqgan: {config: {filename: a}}}\n",
                           "presets.x.vqgan: missing required key 'checkpoint'"),
    "size not int": ("presets:\n  x: {description: d, vqgan: {config: {filename: a}, checkpoint: {filename: b, "
                     "size: big}}}\n", "presets.x.vqgan.checkpoint.size"),
    "bad sha256": ("presets:\n  x: {description: d, vqgan: {config: {filename: a, sha256: abc}, checkpoint: "
                   "{filename: b}}}\n", "presets.x.vqgan.config.sha256"),
    "bad url": ("presets:\n  x: {description: d, vqgan: {config: {filename: a, urls: [ftp.example]}, checkpoint: "
                "{filename: b}}}\n", "presets.x.vqgan.config.urls[0]"),
    "folder in filename": ("presets:\n  x: {description: d, vqgan: {config: {filename: ../a}, checkpoint: "
                           "{filename: b}}}\n", "presets.x.vqgan.config.filename"),
    "embedded in user file": ("presets:\n  x: {description: d, embedded: true, vqgan: {config: {filename: a}, "
                              "checkpoint: {filename: b}}}\n", "presets.x.embedded"),
    "bad name": ("presets:\n  'My Model': {description: d}\n", "preset name 'My Model'"),
    "defaults not mapping": ("presets:\n  x: {description: d, defaults: [1], vqgan: {config: {filename: a}, "
                             "checkpoint: {filename: b}}}\n", "presets.x.defaults"),
    "yaml syntax": ("presets:\n  x: [unclosed\n", "not valid YAML"),
    "not a mapping": ("- a\n- b\n", "expected a mapping"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_user_presets_are_validated_strictly(tmp_path, case):
    text, expected = BROKEN[case]
    path = tmp_path / "presets.yaml"
    path.write_text(text)
    with pytest.raises(VqclipError) as info:
        load_presets_file(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_valid_user_file_round_trips_all_fields(tmp_path):
    path = tmp_path / "p.yaml"
    u1, u2, u3 = web("example.org", "/m.yaml"), web("a.example", "/m.ckpt"), web("b.example", "/m.ckpt")
    path.write_text(textwrap.dedent(f"""\
        presets:
          mine:
            description: my model
            licence: CC-BY
            source: me
            aliases: [my-alias]
            vqgan:
              config: {{filename: m.yaml, urls: {u1}}}
              checkpoint: {{filename: m.ckpt, urls: [{u2}, {u3}],
                           size: 1234, sha256: {"ab" * 32}, approx_size: 1.5 GB}}
            clip: {{model: ViT-B-16, pretrained: laion2b_s34b_b88k}}
            defaults: {{steps: 300, optimizer: {{lr: 0.2}}}}
            vocabulary: {{words: [a, big, "on", cat, dog], grammar: a big (cat|dog), example: a big dog}}
        """))
    p = load_presets_file(path)["mine"]
    assert p.vqgan_config.urls == (u1,)
    assert p.vqgan_checkpoint == FileSpec("m.ckpt", (u2, u3), 1234, "ab" * 32, 1_500_000_000)
    assert (p.clip_model, p.clip_pretrained, p.licence, p.aliases) == ("ViT-B-16", "laion2b_s34b_b88k", "CC-BY",
                                                                       ("my-alias",))
    assert p.defaults == {"steps": 300, "optimizer": {"lr": 0.2}}
    assert p.vocabulary == registry.Vocabulary(frozenset({"a", "big", "on", "cat", "dog"}), "a big (cat|dog)",
                                               "a big dog")


def test_resolve_downloads_once_then_verifies_offline(server, tmp_path):
    cfg, ckpt = b"model: {}\n", payload()
    h = tmp_path / "home"
    write_presets(h / "presets.yaml", {"local": local_preset(
        [server.add("/t.yaml", cfg)], [dead_url(), server.add("/t.ckpt", ckpt)], defaults={"steps": 7})})
    r = resolve_preset("local", home=h, progress=False, fetch_clip_weights=False, timeout=5)
    assert r.vqgan_config.read_bytes() == cfg and r.vqgan_checkpoint.read_bytes() == ckpt
    assert (r.clip_model, r.clip_pretrained, r.defaults, r.clip_cache_dir) == ("ViT-B-32", "openai", {"steps": 7},
                                                                               h / "clip")
    served = len(server.requests)
    server.stop()  # later loads need no network at all
    again = resolve_preset("local", home=h, progress=False, fetch_clip_weights=False)
    assert again.vqgan_checkpoint == r.vqgan_checkpoint and len(server.requests) == served
    r.vqgan_checkpoint.write_bytes(payload(seed=3))  # swapped for another file of the same size
    with pytest.raises(CorruptFileError, match="t.ckpt"):
        resolve_preset("local", home=h, progress=False, fetch_clip_weights=False)


def test_resolve_without_a_chosen_home_fetches_into_the_user_cache_from_any_folder(server, no_chosen_home,
                                                                                 monkeypatch):
    cache = no_chosen_home["user_cache"]
    write_presets(cache / "presets.yaml", {"local": local_preset([server.add("/t.yaml", b"model: {}\n")],
                                                                 [server.add("/t.ckpt", payload())])})
    r = resolve_preset("local", progress=False, fetch_clip_weights=False, timeout=5)
    assert r.vqgan_checkpoint == cache / "t.ckpt" and r.clip_cache_dir == no_chosen_home["hf"]
    elsewhere = no_chosen_home["cwd"] / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    served = len(server.requests)
    assert resolve_preset("local", progress=False, fetch_clip_weights=False).vqgan_checkpoint == r.vqgan_checkpoint
    assert len(server.requests) == served and not (elsewhere / "checkpoints").exists()


def test_resolve_offline_names_every_missing_file_once(tmp_path):
    h = tmp_path / "home"
    urls = [dead_url("/t.yaml")], [dead_url("/t.ckpt"), dead_url("/mirror.ckpt")]
    write_presets(h / "presets.yaml", {"local": local_preset(*urls)})
    with pytest.raises(DownloadError) as info:
        resolve_preset("local", home=h, progress=False, fetch_clip_weights=False, timeout=2)
    message = str(info.value)
    assert message.startswith("could not download 2 files")
    for url in urls[0] + urls[1]:
        assert url in message
    assert f"put it at {h / 't.yaml'}" in message and f"put it at {h / 't.ckpt'}" in message


def test_resolve_without_download_reports_missing_files(tmp_path):
    h = tmp_path / "home"
    url = web("example.org", "/t.yaml")
    write_presets(h / "presets.yaml", {"local": local_preset([url], [])})
    with pytest.raises(DownloadError, match="downloads are off") as info:
        resolve_preset("local", home=h, download=False, fetch_clip_weights=False)
    assert url in str(info.value) and str(h / "t.ckpt") in str(info.value)


def test_resolve_uses_hand_placed_clip_weights(tmp_path):
    h = tmp_path / "home"
    write_presets(h / "presets.yaml", {"local": local_preset([], [])})
    for name in ("t.yaml", "t.ckpt"):
        (h / name).write_bytes(b"x")
    placed = h / "clip" / "ViT-B-32-openai.safetensors"
    placed.parent.mkdir()
    placed.write_bytes(b"w")
    r = resolve_preset("local", home=h, download=False)
    assert (r.clip_model, r.clip_pretrained, r.clip_weights) == ("ViT-B-32-quickgelu", str(placed), placed)


def test_mini_resolves_inside_the_package_with_its_defaults(tmp_path, monkeypatch):
    embedded_mini(monkeypatch, tmp_path, {"size": [64, 64], "steps": 150, "optimizer": {"lr": 0.15}})
    for name in ("vqgan.yaml", "vqgan.safetensors", "clip.json", "clip.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    r = resolve_preset("mini", home=tmp_path / "unused")
    assert (r.vqgan_config, r.vqgan_checkpoint) == (tmp_path / "vqgan.yaml", tmp_path / "vqgan.safetensors")
    assert (r.clip_model, r.clip_pretrained) == (str(tmp_path / "clip.json"), str(tmp_path / "clip.safetensors"))
    assert r.defaults == {"size": [64, 64], "steps": 150, "optimizer": {"lr": 0.15}}
    assert not (tmp_path / "unused").exists(), "the embedded model never downloads or writes anything"


def test_mini_guide_files_are_named_inside_the_package(tmp_path, monkeypatch):
    embedded_mini(monkeypatch, tmp_path, {"guide": {"model": "guide.json", "weights": "/abs/g.safetensors",
                                                    "weight": 0.2}})
    for name in ("vqgan.yaml", "vqgan.safetensors", "clip.json", "clip.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    guide = resolve_preset("mini").defaults["guide"]
    assert guide == {"model": str(tmp_path / "guide.json"), "weights": "/abs/g.safetensors", "weight": 0.2}


def test_mini_missing_files_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "EMBEDDED_DIR", tmp_path)
    (tmp_path / "vqgan.yaml").write_text("model: {}\n")
    with pytest.raises(VqclipError, match="embedded 'mini' model is incomplete.*vqgan.safetensors"):
        resolve_preset("mini")


def test_shipped_mini_model_resolves_when_built():
    if not (registry.EMBEDDED_DIR / "vqgan.safetensors").is_file():
        pytest.skip("the embedded mini model has not been trained into vqclip/mini/weights yet")
    r = resolve_preset("mini")
    assert r.vqgan_checkpoint.is_file() and Path(r.clip_model).is_file() and Path(r.clip_pretrained).is_file()
    guide = r.defaults["guide"]
    assert Path(guide["model"]).is_file() and Path(guide["weights"]).is_file() and guide["weight"] > 0


def test_pinned_checksum_in_user_preset_is_enforced(server, tmp_path):
    h = tmp_path / "home"
    cfg = b"model: {}\n"
    write_presets(h / "presets.yaml", {"local": {"description": "d", "vqgan": {
        "config": {"filename": "t.yaml", "urls": [server.add("/t.yaml", cfg)], "sha256": sha(cfg)},
        "checkpoint": {"filename": "t.ckpt", "urls": [server.add("/t.ckpt", b"abc")], "sha256": "0" * 64}}}})
    with pytest.raises(DownloadError, match="pins 0000"):
        resolve_preset("local", home=h, progress=False, fetch_clip_weights=False, timeout=5)
    assert (h / "t.yaml").read_bytes() == cfg and not (h / "t.ckpt").exists()


def test_another_installs_embedded_weights_are_read_from_this_one(tmp_path, monkeypatch):
    here = tmp_path / "site" / "vqclip" / "mini" / "weights"
    here.mkdir(parents=True)
    (here / "clip.json").write_text("{}")
    monkeypatch.setattr(registry, "EMBEDDED_DIR", here)
    moved = str(tmp_path / "old-venv" / "vqclip" / "mini" / "weights" / "clip.json")
    assert local_embedded(moved) == str(here / "clip.json")
    # anything else stays as written, so a wrong path still fails with its own name
    for path in (str(tmp_path / "old-venv" / "vqclip" / "mini" / "weights" / "other.json"),
                 str(tmp_path / "elsewhere" / "weights" / "clip.json"), "ViT-B-32", None):
        assert local_embedded(path) == path


def test_the_mini_vocabulary_is_the_mini_worlds_caption_words():
    """presets.yaml lists the mini CLIP's words (models/ does not read the world): they must be the words of the
    world's captions, proper and negative (its CLIP learnt both), and its grammar line must name every colour and
    shape."""
    import numpy as np

    from vqclip.mini import world

    vocabulary = get_preset("mini").vocabulary
    rng = np.random.default_rng(0)
    captions = [world.caption(world.sample_any(rng, 0.3, 0.2, blobs=0.2), rng) for _ in range(2000)]
    assert vocabulary.words == {w for caption in captions for w in caption.split()}
    assert all(word in vocabulary.grammar for word in (*world.COLORS, *world.SHAPES))
    world.parse_caption(vocabulary.example)  # the example is a caption of the world
    assert vocabulary.unknown(["A Red circle.", "toaster forest:2", "two red circles on blue", "a red cat"]) == [
        "toaster", "forest", "2", "cat"]
    assert all(get_preset(n).vocabulary is None for n in REQUIRED - {"mini"})  # real CLIPs know any word


@pytest.mark.parametrize("vocabulary,expected", [
    ({"words": ["a", "b"], "grammar": "a b"}, "vocabulary: missing required key 'example'"),
    ({"words": ["a", "B"], "grammar": "a b", "example": "a"}, "vocabulary.words: expected a list of lowercase"),
    ({"words": ["a", "b"], "grammar": "a b", "example": "a c"}, "vocabulary.example: uses c, not in its words"),
    ({"words": ["a"], "grammar": "a", "example": "a", "extra": 1}, "vocabulary: unknown key 'extra'"),
])
def test_a_bad_vocabulary_is_one_line(tmp_path, vocabulary, expected):
    path = write_presets(tmp_path / "p.yaml", {"x": local_preset([], [], vocabulary=vocabulary)})
    with pytest.raises(VqclipError, match=re.escape(expected)):
        load_presets_file(path)


def _vocabulary_notes(caplog, **job) -> list[str]:
    from vqclip.runs.jobs import build_config
    from vqclip.runs.pipeline import note_vocabulary

    caplog.clear()
    with caplog.at_level("INFO", logger="vqclip"):
        note_vocabulary(build_config({"model": "mini", **job}))
    return [r.getMessage() for r in caplog.records if "preset knows only" in r.getMessage()]


def test_words_outside_a_presets_vocabulary_get_one_notice(caplog):
    """Text prompts, every part of a story and negatives are checked, image prompts not; a job whose CLIP is not the
    preset's gets none."""
    (note,) = _vocabulary_notes(caplog, prompt="toaster forest|a red circle:0.5")
    assert "'toaster', 'forest' are not among its words" in note
    assert get_preset("mini").vocabulary.grammar in note and "'a red circle on a blue background'" in note
    assert _vocabulary_notes(caplog, prompt="a red circle on a blue background:1:0.5|a blue square:-1") == []
    assert _vocabulary_notes(caplog, prompt="A Yellow triangle on purple.", negative=["two yellow triangles"]) == []
    (note,) = _vocabulary_notes(caplog, prompt="a red circle ^ a dragon ^ a blue square")
    assert "'dragon' is not among" in note
    (note,) = _vocabulary_notes(caplog, prompt="", story=[{"at": 0, "prompt": "a red circle"},
                                                          {"at": 5, "prompt": "a green moon:1"}])
    assert "'moon' is not among" in note
    (note,) = _vocabulary_notes(caplog, prompt="a red circle", negative=["blurry"])
    assert "'blurry' is not among" in note
    assert _vocabulary_notes(caplog, prompt="a toaster", clip=[{"model": "ViT-B-32", "pretrained": "openai"}]) == []


@pytest.mark.slow
def test_the_cli_notes_an_out_of_grammar_mini_prompt_once_and_goes_on(tmp_path, capsys):
    from vqclip.cli import main

    assert main(["generate", "toaster forest", "--model", "mini", "--steps", "1", "--size", "32", "32", "--candidates",
                 "1", "--cutn", "2", "--no-video", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err.replace("\r", "\n").splitlines()
    notes = [line for line in err if "preset knows only" in line]
    assert len(notes) == 1 and notes[0].startswith("note: the mini preset knows only its captions"), err
    assert "'toaster', 'forest'" in notes[0] and (tmp_path / "run" / "final.png").is_file()


def test_a_user_preset_may_name_its_clip_as_the_old_scripts_did(tmp_path):
    path = write_presets(tmp_path / "p.yaml", {"old": local_preset([], [], clip={"model": "ViT-L/14@336px",
                                                                                 "pretrained": "openai"})})
    preset = load_presets_file(path)["old"]
    assert (preset.clip_model, preset.clip_pretrained) == ("ViT-L-14-336", "openai")
