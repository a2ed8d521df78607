"""CLIP loading against open_clip itself: the weights a folder's files give (open_clip's own preference order), the
embeddings (open_clip's model and tokenizer, normalised), the mean and std each form brings, random weights
without a download, the truncation notice at the context's edge."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer
from safetensors.torch import save_file

from tiny import CLIP_CFG
from vqclip.errors import VqclipError
from vqclip.nets.clip import OPENAI_MEAN, OPENAI_STD, WEIGHT_NAMES, _weights_in, load_clip

TINY_NAME = "tiny-test-clip"


@pytest.fixture
def tiny_name(monkeypatch):
    """open_clip knows the tiny CLIP's architecture by name, for this test only."""
    import open_clip.factory

    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, TINY_NAME, CLIP_CFG)
    return TINY_NAME


def _state(seed: int) -> dict:
    torch.manual_seed(seed)
    return CLIP(**CLIP_CFG).state_dict()


def _save(state: dict, path):
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)


def test_a_folder_gives_the_weights_open_clip_would_pick(tmp_path):
    """With several known names present, the one open_clip's local-dir loader prefers (its _find_checkpoint_in_dir);
    down to one file of any name."""
    from open_clip.factory import _find_checkpoint_in_dir

    names = list(WEIGHT_NAMES)
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    while names:
        assert _weights_in(tmp_path) == _find_checkpoint_in_dir(tmp_path) == str(tmp_path / names[0])
        (tmp_path / names.pop(0)).unlink()
    assert _weights_in(tmp_path) is None
    (tmp_path / "my-finetune.pt").write_bytes(b"x")
    assert _weights_in(tmp_path) == str(tmp_path / "my-finetune.pt")


def test_a_folder_loads_its_preferred_weights_whole(tmp_path):
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CFG}))
    _save(_state(1), tmp_path / "open_clip_model.safetensors")
    _save(_state(2), tmp_path / "pytorch_model.bin")
    clip = load_clip(f"local-dir:{tmp_path}")
    assert all(torch.equal(clip.model.state_dict()[k], v) for k, v in _state(1).items())


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    """An architecture JSON with its own mean/std, its weights, and open_clip's model and tokenizer holding them."""
    folder = tmp_path_factory.mktemp("clip")
    pre = {"mean": [0.3, 0.4, 0.5], "std": [0.2, 0.25, 0.3]}
    (folder / "clip.json").write_text(json.dumps({"model_cfg": CLIP_CFG, "preprocess_cfg": pre}))
    state = _state(5)
    _save(state, folder / "clip.safetensors")
    model = CLIP(**CLIP_CFG).eval()
    model.load_state_dict(state)
    clip = load_clip(str(folder / "clip.json"), str(folder / "clip.safetensors"))
    return folder, pre, model, SimpleTokenizer(context_length=16), clip


def test_text_embeddings_are_open_clips_normalised(stock):
    _, _, model, tokenizer, clip = stock
    texts = ["a red circle", "two blue squares on a white field"]
    with torch.no_grad():
        expected = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
    torch.testing.assert_close(clip.encode_text(texts), expected, rtol=1e-5, atol=1e-6)


def test_image_embeddings_are_open_clips_of_the_normalised_image(stock):
    _, pre, model, _, clip = stock
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor(pre["mean"]).view(1, 3, 1, 1), torch.tensor(pre["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = F.normalize(model.encode_image((image - mean) / std), dim=-1)
    torch.testing.assert_close(clip.encode_image(image), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("data, mean, std", [
    ({"model_cfg": CLIP_CFG, "preprocess_cfg": {"mean": [0.1] * 3, "std": [0.9] * 3}}, (0.1,) * 3, (0.9,) * 3),
    (CLIP_CFG, OPENAI_MEAN, OPENAI_STD),
    ({"model_cfg": CLIP_CFG, "preprocess_cfg": {"mean": [0.2] * 3}}, (0.2,) * 3, OPENAI_STD),
])
def test_the_mean_and_std_a_json_brings(tmp_path, data, mean, std):
    (tmp_path / "c.json").write_text(json.dumps(data))
    clip = load_clip(str(tmp_path / "c.json"))
    torch.testing.assert_close(clip.mean.flatten(), torch.tensor(mean))
    torch.testing.assert_close(clip.std.flatten(), torch.tensor(std))


@pytest.mark.parametrize("pretrained", [None, "random"])
def test_a_name_without_weights_is_random_and_fetches_nothing(tiny_name, monkeypatch, caplog, pretrained):
    import open_clip

    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: pytest.fail("open_clip asked to fetch weights"))
    with caplog.at_level(logging.INFO, logger="vqclip"):
        clip = load_clip(tiny_name, pretrained)
    assert "has no weights: using random weights" in caplog.text
    assert clip.encode_text(["a"]).shape == (1, CLIP_CFG["embed_dim"])
    torch.testing.assert_close(clip.mean.flatten(), torch.tensor(OPENAI_MEAN))


def test_a_name_with_a_weights_file_loads_that_file(tiny_name, stock):
    folder, _, model, _, _ = stock
    clip = load_clip(tiny_name, str(folder / "clip.safetensors"))
    assert all(torch.equal(clip.model.state_dict()[k], v) for k, v in model.state_dict().items())
    assert not clip.training and not any(p.requires_grad for p in clip.parameters())


def test_an_unknown_tag_lists_the_known_ones():
    with pytest.raises(VqclipError, match="CLIP ViT-B-32: 'nope' is neither a pretrained tag \\(known: .*openai.*\\) "
                                          "nor a file"):
        load_clip("ViT-B-32", "nope")


def test_the_truncation_notice_comes_exactly_past_the_context(stock, caplog):
    clip = stock[4]  # 16 tokens: 14 words + 2 marks
    with caplog.at_level(logging.INFO, logger="vqclip"):
        clip.tokenize(["a " * 14])
        assert "truncated" not in caplog.text
        clip.tokenize(["a " * 15])
    assert "is longer than clip's 16 tokens; it is truncated" in caplog.text


def test_an_architecture_file_named_without_json_and_a_missing_folder(tmp_path, stock):
    folder = stock[0]
    (tmp_path / "arch").write_text((folder / "clip.json").read_text())
    clip = load_clip(f"local-dir:{tmp_path / 'arch'}", str(folder / "clip.safetensors"))
    assert clip.image_size == 32
    with pytest.raises(VqclipError, match="no such CLIP folder"):
        load_clip(f"local-dir:{tmp_path / 'absent'}")


def test_weights_missing_a_tensor_do_not_load_partly(tmp_path, stock):
    folder = stock[0]
    state = _state(5)
    state.pop("visual.proj")
    _save(state, tmp_path / "partial.safetensors")
    with pytest.raises(VqclipError, match="partial.safetensors does not match .*clip.json: .*visual.proj") as info:
        load_clip(str(folder / "clip.json"), str(tmp_path / "partial.safetensors"))
    assert "\n" not in str(info.value)


def test_a_weights_file_named_beside_a_folder_wins_over_the_folders_own(tmp_path, stock):
    folder, _, model, _, _ = stock
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CFG}))
    _save(_state(1), tmp_path / "open_clip_model.safetensors")
    clip = load_clip(f"local-dir:{tmp_path}", str(folder / "clip.safetensors"))
    assert all(torch.equal(clip.model.state_dict()[k], v) for k, v in model.state_dict().items())
