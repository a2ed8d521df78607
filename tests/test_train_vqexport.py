"""The VQGAN a training starts from and the preset folder it ends as (vqclip.train.vqexport), and a preset given as
a folder (vqclip.models.presets.get_preset): the config read back by vqclip's taming loader, the weights read back
equal, the source preset's CLIP, defaults and vocabulary kept, and bad --from values as one line."""

from __future__ import annotations

import pytest
import torch
import yaml

from vqclip.errors import VqclipError
from vqclip.models.presets import PRESET_FILE, get_preset
from vqclip.nets.vqgan import load_vqgan, vqgan_spec
from vqclip.train.vqexport import export_vqgan, load_source, source_files


@pytest.fixture(scope="module")
def exported(tiny_vqgan, tmp_path_factory):
    """The tiny VQGAN (given as CONFIG+CKPT) exported as it is."""
    model, spec = load_source(f"{tiny_vqgan[0]}+{tiny_vqgan[1]}", torch.device("cpu"))
    return model, spec, export_vqgan(model, spec, tmp_path_factory.mktemp("exp") / "vqgan", "x.yaml+y.ckpt")


def test_the_export_reads_back_as_the_same_vqgan(exported, tiny_vqgan):
    model, spec, folder = exported
    assert vqgan_spec(folder / "vqgan.yaml")[:4] == vqgan_spec(tiny_vqgan[0])[:4]
    back = load_vqgan(folder / "vqgan.yaml", folder / "vqgan.safetensors").state_dict()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    assert model.encoder.conv_in.weight.requires_grad  # the source is loaded to be trained


def test_the_preset_folder_names_its_files_and_the_default_clip(exported):
    _, _, folder = exported
    preset = get_preset(str(folder))
    assert preset.folder() == folder.absolute()
    assert (preset.clip_model, preset.clip_pretrained) == ("ViT-B-32", "openai")  # no preset to inherit from
    assert preset.vqgan_checkpoint.size == (folder / "vqgan.safetensors").stat().st_size
    assert preset.vqgan_config.filename == "vqgan.yaml" and len(preset.vqgan_config.sha256) == 64


def test_a_mini_export_keeps_its_clip_defaults_and_vocabulary(exported, tmp_path):
    model, spec, _ = exported
    folder = export_vqgan(model, spec, tmp_path / "m", "mini", name="mymini")
    mine, mini = get_preset(str(folder)), get_preset("mini")
    assert mine.name == "mymini" and mine.vocabulary == mini.vocabulary
    assert mine.clip_model == str(mini.folder() / "clip.json") and mine.clip_templates == mini.clip_templates
    assert mine.defaults["steps"] == mini.defaults["steps"]
    assert mine.defaults["guide"]["weights"] == str(mini.folder() / "guide.safetensors")


def test_a_folder_with_several_presets_is_refused(exported, tmp_path):
    _, _, folder = exported
    data = yaml.safe_load((folder / PRESET_FILE).read_text())
    (name, entry), = data["presets"].items()
    data["presets"]["other"] = entry
    (tmp_path / PRESET_FILE).write_text(yaml.safe_dump(data))
    with pytest.raises(VqclipError, match="exactly one preset, found 2"):
        get_preset(str(tmp_path))


def test_from_is_a_preset_a_preset_folder_or_config_plus_checkpoint(exported, tiny_vqgan, tmp_path):
    _, _, folder = exported
    assert source_files(str(folder)) == (folder.absolute() / "vqgan.yaml", folder.absolute() / "vqgan.safetensors")
    assert source_files(f"{tiny_vqgan[0]}+{tiny_vqgan[1]}") == tiny_vqgan
    assert source_files("mini")[1].name == "vqgan.safetensors"
    for bad, words in ((str(tmp_path / "absent"), "no such preset, preset folder"),
                       (f"{tiny_vqgan[0]}+{tmp_path / 'none.ckpt'}", "none.ckpt is not a file"),
                       (f"{tmp_path / 'none.yaml'}+{tiny_vqgan[1]}", "none.yaml is not a file")):
        with pytest.raises(VqclipError, match=words):
            source_files(bad)


def test_a_gumbel_vqgan_is_refused(tiny_gumbel):
    with pytest.raises(VqclipError, match="GumbelVQ"):
        load_source(f"{tiny_gumbel[0]}+{tiny_gumbel[1]}", torch.device("cpu"))


def test_a_mini_export_made_by_another_install_finds_this_installs_mini_files(exported, tmp_path):
    """Its preset.yaml names the mini CLIP and guide inside the install that exported it (gone since: a removed
    virtualenv or checkout); they are this install's copies of the same files."""
    from vqclip.models.resolve import preset_clip, preset_defaults

    model, spec, _ = exported
    folder = export_vqgan(model, spec, tmp_path / "m", "mini", name="mymini")
    mini = get_preset("mini").folder()
    text = (folder / PRESET_FILE).read_text()
    assert str(mini) in text
    (folder / PRESET_FILE).write_text(text.replace(str(mini.parents[2]), "/gone/site-packages"))
    mine = get_preset(str(folder))
    assert mine.clip_model.startswith("/gone/site-packages/vqclip/mini/weights/")
    assert preset_clip(mine) == (str(mini / "clip.json"), str(mini / "clip.safetensors"))
    guide = preset_defaults(mine)["guide"]
    assert (guide["model"], guide["weights"]) == (str(mini / "guide.json"), str(mini / "guide.safetensors"))
