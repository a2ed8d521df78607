"""`vqclip train clip --from` a VQGAN's preset folder (vqclip.train.export): the CLIP starts from that preset's CLIP,
and the exported CLIP folder is one preset of that VQGAN and the trained CLIP, with the preset's defaults and its
vocabulary grown by the captions' words, that `vqclip generate --model RUN/clip` uses. A tiny VQGAN, the mini CLIP,
2 steps."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from PIL import Image

from tests.tiny import write_clip
from vqclip.cli import main
from vqclip.mini import world
from vqclip.models.integrity import sha256_file
from vqclip.models.presets import PRESET_FILE, get_preset
from vqclip.models.resolve import preset_clip, preset_defaults, preset_paths
from vqclip.nets.clip import load_clip
from vqclip.train.export import PRESET_NAME, paired_preset, source_spec
from vqclip.train.vqexport import export_vqgan, load_source


@pytest.fixture(scope="module")
def made(tiny_vqgan, tmp_path_factory):
    """A tiny VQGAN exported from `mini` (a preset folder), and a 2-step CLIP run `--from` that folder on 8 pairs,
    three of whose captions say a word the mini world has not ('ring': 2 pairs are held out, so it is trained on)."""
    base = tmp_path_factory.mktemp("ringpreset")
    model, spec = load_source(f"{tiny_vqgan[0]}+{tiny_vqgan[1]}", torch.device("cpu"))
    vqfolder = export_vqgan(model, spec, base / "vqrun" / "vqgan", "mini")
    data = base / "pairs"
    data.mkdir()
    imgs, caps, _ = world.make_dataset(8, seed=3)
    caps[:3] = ["a red ring on a blue background", "a green ring", "a white ring on a black background"]
    for i, (im, cap) in enumerate(zip(imgs, caps)):
        Image.fromarray(im).save(data / f"p{i}.png")
        (data / f"p{i}.txt").write_text(cap)
    run = base / "myrings"
    assert main(["train", "clip", "--data", str(data), "--from", str(vqfolder), "--out", str(run), "--steps", "2",
                 "--batch", "4", "--val", "0.25", "--lr", "1e-3", "--warmup", "1", "--quiet", "--no-amp"]) == 0
    split = json.loads((run / "split.json").read_text())
    return vqfolder, run / "clip", split


def test_from_a_vqgan_preset_folder_starts_from_its_clip(made, tmp_path):
    vqfolder, _, _ = made
    assert source_spec(str(vqfolder)) == preset_clip(get_preset("mini"))  # the exported VQGAN took mini's CLIP
    assert paired_preset(str(vqfolder)).base == vqfolder.absolute()
    clip_folder = tmp_path / "c"  # a CLIP folder (no preset.yaml) is still a CLIP to start from, paired by default
    clip_folder.mkdir()
    write_clip(clip_folder)
    assert source_spec(str(clip_folder)) == (str(clip_folder), None)
    assert paired_preset(str(clip_folder)).base is None


def test_the_export_is_one_preset_of_that_vqgan_and_the_trained_clip(made):
    vqfolder, out, _ = made
    preset, source = get_preset(str(out)), get_preset(str(vqfolder))
    assert preset.name == "myrings" and not (out / PRESET_NAME).exists()  # only the preset folder's own file
    for mine, theirs in zip(preset_paths(preset), preset_paths(source)):
        assert mine.parent == out.absolute() and sha256_file(mine) == sha256_file(theirs)
        assert os.path.samefile(mine, theirs)  # linked, not copied, on one file system
    assert preset.files == source.files  # sizes and sha256 as the VQGAN's folder recorded them
    mine = load_clip(*preset_clip(preset)).model.state_dict()
    trained = load_clip(str(out)).model.state_dict()  # what --clip-model RUN/clip loads
    mini = load_clip(*preset_clip(get_preset("mini"))).model.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in trained.items())
    assert not all(torch.equal(mini[k], v) for k, v in trained.items())  # and it is the trained one
    assert preset_defaults(preset) == preset_defaults(source) and preset.defaults["steps"] == 100


def test_its_vocabulary_is_the_presets_and_the_training_captions_words(made):
    vqfolder, out, split = made
    words, old = get_preset(str(out)).vocabulary.words, get_preset(str(vqfolder)).vocabulary.words
    trained = {w for p in split["train"] for w in p["caption"].split()}
    held = {w for p in split["val"] for w in p["caption"].split()} - trained - old
    assert old < words and words == old | trained
    assert "ring" in words and "ring" not in old and not held & words


def test_generate_takes_the_folder_as_its_model(made, tmp_path, caplog):
    _, out, _ = made
    with caplog.at_level(logging.INFO, logger="vqclip"):
        assert main(["generate", "a red ring on a blue hexagon", "--model", str(out), "--out", str(tmp_path / "run"),
                     "--steps", "2", "--size", "32", "32", "--seed", "0", "--save-every", "0", "--no-video",
                     "--no-report", "--candidates", "1", "--cutn", "2"]) == 0
    notice = [r.getMessage() for r in caplog.records if "not among its words" in r.getMessage()]
    assert Image.open(tmp_path / "run" / "final.png").size == (32, 32)
    assert len(notice) == 1 and "'hexagon'" in notice[0] and "'ring'" not in notice[0]  # it was taught 'ring' only
